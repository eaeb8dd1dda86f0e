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
 * Gathers Row(k, f1, f2, ...) records into Row(bundleKey, Row([f1, ...], [f2, ...])) bundles, so a
 * Python function is called once per bundle instead of once per record (PyFlink's cost per
 * call is most of a light function's cost).
 *
 * <p>The bundle key is the record key, or with {@code buckets > 0} the record key's bucket
 * ({@code floorMod(k.hashCode(), buckets)} as text): a job whose state is per person bundles
 * many persons per call that way; a key "#bucket:N" goes to bucket N. A bundle is sent when it holds {@code maxRecords} records,
 * and every bundle is sent {@code maxDelayMs} after the first record that is waiting, before a
 * checkpoint barrier, and at the end of the input. Records keep their order within a key.
 * A watermark is held back until the bundles that came before it have been sent, then sent
 * after them, so no record is ever behind a watermark that passed it. Nothing is held over a
 * checkpoint, so the operator has no state.
 */
public class RecordBundler extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;
    public static final String BUCKET_PREFIX = "#bucket:";

    private final int maxRecords;
    private final long maxDelayMs;
    private final int buckets;
    private final String[] fieldKinds; // "string" or "long", for fields 1..n
    private transient Map<String, ArrayList<Row>> bundles;
    private transient boolean flushScheduled;
    private transient Watermark heldWatermark;

    public RecordBundler(int maxRecords, long maxDelayMs, int buckets, String[] fieldKinds) {
        if (maxRecords < 1 || maxDelayMs < 1 || buckets < 0) {
            throw new IllegalArgumentException("maxRecords and maxDelayMs must be at least 1, buckets at least 0");
        }
        this.maxRecords = maxRecords;
        this.maxDelayMs = maxDelayMs;
        this.buckets = buckets;
        this.fieldKinds = fieldKinds.clone();
    }

    @Override
    public void open() throws Exception {
        super.open();
        bundles = new LinkedHashMap<>();
    }

    private String bundleKey(String key) {
        if (buckets == 0) {
            return key;
        }
        if (key != null && key.startsWith(BUCKET_PREFIX)) {
            return key.substring(BUCKET_PREFIX.length()); // addressed to a bucket (a definition change fanned out)
        }
        return Integer.toString(Math.floorMod(key == null ? 0 : key.hashCode(), buckets));
    }

    @Override
    public void processElement(StreamRecord<Row> record) {
        Row row = record.getValue();
        String key = bundleKey((String) row.getField(0));
        ArrayList<Row> bundle = bundles.computeIfAbsent(key, k -> new ArrayList<>());
        bundle.add(row);
        if (bundle.size() >= maxRecords) {
            bundles.remove(key);
            emit(key, bundle);
            if (bundles.isEmpty()) {
                releaseWatermark();
            }
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
        if (mark.getTimestamp() == Long.MAX_VALUE) {
            flush(); // the end of a bounded input: the last real watermark goes out before it
        }
        if (bundles.isEmpty()) {
            super.processWatermark(mark);
        } else {
            heldWatermark = mark; // sent right after the bundles now waiting
        }
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    private void flush() {
        for (Map.Entry<String, ArrayList<Row>> e : bundles.entrySet()) {
            emit(e.getKey(), e.getValue());
        }
        bundles.clear();
        releaseWatermark();
    }

    private void releaseWatermark() {
        if (heldWatermark != null) {
            Watermark mark = heldWatermark;
            heldWatermark = null;
            try {
                super.processWatermark(mark);
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }
    }

    private void emit(String key, ArrayList<Row> bundle) {
        Object[] columns = new Object[fieldKinds.length];
        for (int f = 0; f < fieldKinds.length; f++) {
            Object[] column = "long".equals(fieldKinds[f]) ? new Long[bundle.size()] : new String[bundle.size()];
            for (int i = 0; i < bundle.size(); i++) {
                column[i] = bundle.get(i).getField(f + 1);
            }
            columns[f] = column;
        }
        // (key, element): the shape PyFlink's keyed operators take, keyed by its first field
        output.collect(new StreamRecord<>(Row.of(key, Row.of(columns))));
    }
}
