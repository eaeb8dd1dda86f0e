-- Person profiles (tracktor.profiles): the latest snapshot per person; merged-away persons
-- keep a row with merged_into set and no properties.
CREATE TABLE IF NOT EXISTS {database}.persons
(
    app         LowCardinality(String),
    person_id   String,
    properties  String COMMENT 'JSON object',
    version     UInt64,
    ts          DateTime64(3, 'UTC'),
    merged_into Nullable(String)
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app, person_id)
