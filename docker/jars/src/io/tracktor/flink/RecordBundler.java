package io.tracktor.flink;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Gathers Row(k, v) records into Row(k, [v, ...]) bundles per key, so a Python function is
 * called once per bundle instead of once per record (PyFlink's per-call overhead is most of
 * a light function's cost).
 *
 * <p>A key's bundle is sent when it holds {@code maxRecords} values, and every bundle is sent
 * {@code maxDelayMs} after the first record that is waiting, before a checkpoint barrier or a
 * watermark, and at the end of the input. Values keep their order within a key. Nothing is
 * held over a checkpoint, so the operator has no state: after a restore, the source replays
 * from offsets taken when every bundle before them had been sent on.
 */
public class RecordBundler extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;

    private final int maxRecords;
    private final long maxDelayMs;
    private transient Map<String, ArrayList<String>> bundles;
    private transient boolean flushScheduled;

    public RecordBundler(int maxRecords, long maxDelayMs) {
        if (maxRecords < 1 || maxDelayMs < 1) {
            throw new IllegalArgumentException("maxRecords and maxDelayMs must be at least 1");
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
    }

    @Override
    public void open() throws Exception {
        super.open();
        bundles = new LinkedHashMap<>();
    }

    @Override
    public void processElement(StreamRecord<Row> record) {
        Row row = record.getValue();
        String key = (String) row.getField(0);
        ArrayList<String> bundle = bundles.computeIfAbsent(key, k -> new ArrayList<>());
        bundle.add((String) row.getField(1));
        if (bundle.size() >= maxRecords) {
            bundles.remove(key);
            emit(key, bundle);
        } else if (!flushScheduled) {
            flushScheduled = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, this);
        }
    }

    @Override
    public void onProcessingTime(long time) {
        flushScheduled = false;
        flush();
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
        super.prepareSnapshotPreBarrier(checkpointId);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        flush();
        super.processWatermark(mark);
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    private void flush() {
        for (Map.Entry<String, ArrayList<String>> e : bundles.entrySet()) {
            emit(e.getKey(), e.getValue());
        }
        bundles.clear();
    }

    private void emit(String key, ArrayList<String> bundle) {
        output.collect(new StreamRecord<>(Row.of(key, bundle.toArray(new String[0]))));
    }
}
