package io.tracktor.flink;

import java.time.Instant;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * Row(k, v, kafka timestamp as an Instant) -> Row(k, v, ms since the epoch): a job's Python
 * code gets the record's time as a plain number (the record's timestamp and the watermarks
 * stay as Flink set them).
 */
public class SourceRows implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public Row map(Row row) {
        Instant ts = (Instant) row.getField(2);
        return Row.of(row.getField(0), row.getField(1), ts == null ? 0L : ts.toEpochMilli());
    }
}
