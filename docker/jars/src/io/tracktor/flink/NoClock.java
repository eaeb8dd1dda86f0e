package io.tracktor.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.runtime.watermarkstatus.WatermarkStatus;

/**
 * Takes an input out of a job's event time: it declares itself idle from the start and for
 * good, so a topic that is often quiet (definition changes, merge handoffs) never holds back
 * the clock that the job's other inputs drive. Its records pass unchanged; the job does not
 * time anything by them.
 *
 * <p>Idle, not "at the end of time": were it to send the largest watermark instead, the job's
 * clock would jump to the end of time whenever its clock inputs went idle too (quiet for
 * {@code flink.idle_partition_timeout}: their writer down or restarting), firing every pending
 * timer at once. With every input idle the clock stays at the largest watermark its clock
 * inputs reached (Flink's rule for a task whose inputs all went idle).
 */
public class NoClock<T> extends AbstractStreamOperator<T> implements OneInputStreamOperator<T, T> {
    private static final long serialVersionUID = 1L;

    @Override
    public void open() throws Exception {
        super.open();
        output.emitWatermarkStatus(WatermarkStatus.IDLE);
    }

    @Override
    public void processElement(StreamRecord<T> record) {
        output.collect(record);
    }

    @Override
    public void processWatermark(Watermark mark) {
        // the input's own watermarks are ignored: it has none that matter
    }

    @Override
    public void processWatermarkStatus(WatermarkStatus status) {
        // nor its own idleness: this input stays idle
    }
}
