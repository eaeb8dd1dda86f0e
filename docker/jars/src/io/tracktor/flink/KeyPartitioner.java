package io.tracktor.flink;

import org.apache.flink.connector.kafka.sink.KafkaPartitioner;
import org.apache.flink.kafka.shaded.org.apache.kafka.common.utils.Utils;

import java.nio.charset.StandardCharsets;

/**
 * Kafka's own partitioning of keyed records (murmur2 of the key), except that a heartbeat's
 * key "#hb:N" names its partition N: each partition of a clock topic gets its own heartbeat.
 */
public class KeyPartitioner<T> implements KafkaPartitioner<T> {
    private static final long serialVersionUID = 1L;
    private static final byte[] PREFIX = HeartbeatEmitter.KEY_PREFIX.getBytes(StandardCharsets.UTF_8);

    @Override
    public int partition(T record, byte[] key, byte[] value, String topic, int[] partitions) {
        if (key == null) {
            return partitions[0];
        }
        if (isHeartbeat(key)) {
            int n = Integer.parseInt(new String(key, PREFIX.length, key.length - PREFIX.length, StandardCharsets.UTF_8));
            return partitions[n % partitions.length];
        }
        return partitions[Utils.toPositive(Utils.murmur2(key)) % partitions.length];
    }

    private static boolean isHeartbeat(byte[] key) {
        if (key.length <= PREFIX.length) {
            return false;
        }
        for (int i = 0; i < PREFIX.length; i++) {
            if (key[i] != PREFIX[i]) {
                return false;
            }
        }
        return true;
    }
}
