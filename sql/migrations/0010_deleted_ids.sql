-- The deletion register: a deleted person's ids, as 64-bit hashes (not the ids), and when
-- they were deleted. metric_rollup reads it at start so that rows about a deleted id from
-- before its deletion, reaching it late or on a replay, are not written (udfs/rollup.py).
CREATE TABLE IF NOT EXISTS {database}.deleted_ids
(
    app LowCardinality(String),
    id_hash UInt64,
    ts DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (app, id_hash);
