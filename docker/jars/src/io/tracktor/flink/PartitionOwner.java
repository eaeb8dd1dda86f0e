package io.tracktor.flink;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

import org.apache.flink.api.common.functions.Partitioner;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.types.Row;

/**
 * Routes a job's output rows Row(topic, key, value, timestamp) to the sink subtask that owns
 * their Kafka partition: partition p of a clock topic goes to subtask p mod n, the one whose
 * {@link HeartbeatEmitter} writes p's heartbeats. A heartbeat then comes after every record
 * its time covers from every subtask of the job, not only from its own. Rows of other
 * topics go by their key's partition of 1024 (any spread will do).
 */
public class PartitionOwner implements KeySelector<Row, Integer>, Partitioner<Integer> {
    private static final long serialVersionUID = 1L;
    private static final int OTHERS = 1024;

    private final Map<String, Integer> clockPartitions = new HashMap<>();

    public PartitionOwner(String[] topics, int[] partitions) {
        if (topics.length != partitions.length) {
            throw new IllegalArgumentException("one partition count per topic");
        }
        for (int t = 0; t < topics.length; t++) {
            clockPartitions.put(topics[t], partitions[t]);
        }
    }

    @Override
    public Integer getKey(Row row) {
        String key = (String) row.getField(1);
        byte[] bytes = key == null ? null : key.getBytes(StandardCharsets.UTF_8);
        return KeyPartitioner.indexOf(bytes, clockPartitions.getOrDefault((String) row.getField(0), OTHERS));
    }

    @Override
    public int partition(Integer partition, int subtasks) {
        return partition % subtasks;
    }
}
