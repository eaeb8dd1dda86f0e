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
        return partitions[indexOf(key, partitions.length)];
    }

    /** The partition (0 .. count - 1) a record with this key goes to. */
    public static int indexOf(byte[] key, int count) {
        if (key == null) {
            return 0;
        }
        if (isHeartbeat(key)) {
            return Integer.parseInt(new String(key, PREFIX.length, key.length - PREFIX.length, StandardCharsets.UTF_8)) % count;
        }
        return Utils.toPositive(Utils.murmur2(key)) % count;
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
