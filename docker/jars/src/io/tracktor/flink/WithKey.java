package io.tracktor.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/** Row(k, v, ts) -> Row(key, v, ts) with a fixed key: records bundled under one key whatever theirs. */
public class WithKey implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;
    private final String key;

    public WithKey(String key) {
        this.key = key;
    }

    @Override
    public Row map(Row row) {
        return Row.of(key, row.getField(1), row.getField(2));
    }
}
