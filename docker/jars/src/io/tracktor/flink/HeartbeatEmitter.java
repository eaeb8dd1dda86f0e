package io.tracktor.flink;

import org.apache.flink.api.common.operators.ProcessingTimeService.ProcessingTimeCallback;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.api.watermark.Watermark;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;

/**
 * Writes the job's clock into its output topics: when the watermark has moved, a heartbeat
 * record Row(topic, "#hb:N", {"heartbeat": ms}, ms) for every partition N of every clock topic,
 * at most once per {@code intervalMs}. A heartbeat comes after every record that came before
 * the watermark, so a job reading the topic may take its time from them (its watermark then
 * follows this job's even while nothing else is written). The end of a bounded input
 * (the largest watermark) is no time and is not written.
 *
 * <p>At parallelism n, subtask i writes the heartbeats of the partitions p with p mod n = i,
 * and {@link PartitionOwner} sends it every record for them: so each partition has one
 * writer, and its watermark is the least of every upstream subtask's (a subtask's own clock
 * may be ahead of records another subtask has still to write there).
 */
public class HeartbeatEmitter extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, ProcessingTimeCallback {
    private static final long serialVersionUID = 1L;
    public static final String KEY_PREFIX = "#hb:";

    private final String[] topics;
    private final int[] partitions;
    private final long intervalMs;
    private transient long sent;
    private transient long pending;
    private transient long lastWrite;
    private transient boolean scheduled;
    private transient int subtask;
    private transient int subtasks;

    public HeartbeatEmitter(String[] topics, int[] partitions, long intervalMs) {
        if (topics.length != partitions.length) {
            throw new IllegalArgumentException("one partition count per topic");
        }
        this.topics = topics.clone();
        this.partitions = partitions.clone();
        this.intervalMs = intervalMs;
    }

    @Override
    public void open() throws Exception {
        super.open();
        sent = Long.MIN_VALUE;
        pending = Long.MIN_VALUE;
        lastWrite = Long.MIN_VALUE;
        subtask = getRuntimeContext().getTaskInfo().getIndexOfThisSubtask();
        subtasks = getRuntimeContext().getTaskInfo().getNumberOfParallelSubtasks();
    }

    @Override
    public void processElement(StreamRecord<Row> record) {
        output.collect(record);
    }

    @Override
    public void processWatermark(Watermark mark) throws Exception {
        super.processWatermark(mark);
        long time = mark.getTimestamp();
        if (time == Long.MAX_VALUE || time <= pending) {
            return;
        }
        pending = time;
        long now = getProcessingTimeService().getCurrentProcessingTime();
        if (lastWrite == Long.MIN_VALUE || now - lastWrite >= intervalMs) {
            write(now);
        } else if (!scheduled) {
            scheduled = true;
            getProcessingTimeService().registerTimer(lastWrite + intervalMs, this);
        }
    }

    @Override
    public void onProcessingTime(long now) {
        scheduled = false;
        if (pending > sent) {
            write(now);
        }
    }

    @Override
    public void finish() throws Exception {
        if (pending > sent) {
            write(getProcessingTimeService().getCurrentProcessingTime()); // the last clock of a bounded run
        }
        super.finish();
    }

    private void write(long now) {
        String value = "{\"heartbeat\":" + pending + "}";
        for (int t = 0; t < topics.length; t++) {
            for (int p = subtask; p < partitions[t]; p += subtasks) {
                output.collect(new StreamRecord<>(Row.of(topics[t], KEY_PREFIX + p, value, pending)));
            }
        }
        sent = pending;
        lastWrite = now;
    }
}
