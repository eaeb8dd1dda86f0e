package io.tracktor.flink;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Row(k, v, ts) -> the same row once per person bucket, keyed "#bucket:N": a definition change
 * reaches every bucket of a per-person job, which then visits the persons it holds (PyFlink
 * cannot visit every key from a broadcast).
 */
public class FanOut implements FlatMapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;
    private final int buckets;

    public FanOut(int buckets) {
        this.buckets = buckets;
    }

    @Override
    public void flatMap(Row row, Collector<Row> out) {
        for (int b = 0; b < buckets; b++) {
            out.collect(Row.of(RecordBundler.BUCKET_PREFIX + b, row.getField(1), row.getField(2)));
        }
    }
}
