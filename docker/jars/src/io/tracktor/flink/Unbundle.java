package io.tracktor.flink;

import org.apache.flink.api.common.functions.FlatMapFunction;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * Row([topic, ...], [key, ...], [value, ...], [timestamp, ...]) -> one Row(topic, key, value,
 * timestamp) per index: a Python function's outputs for a whole bundle cross into the JVM as
 * one row, and are split here for the Kafka sink.
 */
public class Unbundle implements FlatMapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public void flatMap(Row bundle, Collector<Row> out) {
        Object[] topics = (Object[]) bundle.getField(0);
        Object[] keys = (Object[]) bundle.getField(1);
        Object[] values = (Object[]) bundle.getField(2);
        Object[] stamps = (Object[]) bundle.getField(3);
        for (int i = 0; i < values.length; i++) {
            out.collect(Row.of(topics[i], keys[i], values[i], stamps[i]));
        }
    }
}
