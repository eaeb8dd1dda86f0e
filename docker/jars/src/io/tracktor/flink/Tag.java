package io.tracktor.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/** Row(k, v, ts) -> Row(k, v, ts, tag): which input a record came from, kept through a bundle. */
public class Tag implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;
    private final String tag;

    public Tag(String tag) {
        this.tag = tag;
    }

    @Override
    public Row map(Row row) {
        return Row.of(row.getField(0), row.getField(1), row.getField(2), tag);
    }
}
