-- Resolved and derived events (tracktor.events, tracktor.derived). Replayed rows collapse:
-- an event_id always has the same app, event, day and distinct_id, so duplicates share a key.
CREATE TABLE IF NOT EXISTS {database}.events
(
    app         LowCardinality(String),
    event_id    String,
    kind        LowCardinality(String),
    event       String,
    distinct_id String,
    person_id   String COMMENT 'the canonical person when processed; queries re-attribute through identities',
    ts          DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    data        String COMMENT 'the event arguments, JSON'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (app, event, toDate(ts), distinct_id, event_id)
