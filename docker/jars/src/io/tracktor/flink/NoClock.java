package io.tracktor.flink;

import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;

/**
 * Takes an input out of a job's event time: its watermark is the largest there is from the
 * start, so a topic that is often quiet (definition changes, merge handoffs) never holds
 * back the clock that the job's other inputs drive. Its records pass unchanged; the job does
 * not time anything by them.
 */
public class NoClock<T> extends AbstractStreamOperator<T> implements OneInputStreamOperator<T, T> {
    private static final long serialVersionUID = 1L;

    @Override
    public void open() throws Exception {
        super.open();
        output.emitWatermark(Watermark.MAX_WATERMARK);
    }

    @Override
    public void processElement(StreamRecord<T> record) {
        output.collect(record);
    }

    @Override
    public void processWatermark(Watermark mark) {
        // the input's own watermarks are ignored: it has none that matter
    }
}
