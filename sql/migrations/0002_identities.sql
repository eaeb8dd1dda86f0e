-- distinct id -> person (tracktor.identities); the highest version per (app, distinct_id) is current.
-- An id with no row is its own person.
CREATE TABLE IF NOT EXISTS {database}.identities
(
    app         LowCardinality(String),
    distinct_id String,
    person_id   String,
    version     UInt64,
    ts          DateTime64(3, 'UTC'),
    event_id    String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app, distinct_id)
