-- The dashboard's People pages and saved definitions.

-- Every person of an app after identity merges with all their distinct ids (their own
-- included): those the identities map to them, those with a profile of their own, and the
-- ids only seen in events (a visitor who never identified nor set a property is a person too).
CREATE VIEW IF NOT EXISTS {database}.people_ids AS
SELECT person, arraySort(arrayDistinct(arrayPushBack(groupArray(id), person))) AS ids
FROM
(
    SELECT person_id AS person, distinct_id AS id FROM {database}.person_ids(app = {app:String}) WHERE person_id != ''
    UNION ALL
    SELECT person_id AS person, person_id AS id FROM {database}.persons FINAL
    WHERE app = {app:String} AND merged_into IS NULL
    UNION ALL
    SELECT DISTINCT distinct_id AS person, distinct_id AS id FROM {database}.events
    WHERE app = {app:String}
      AND distinct_id NOT IN (SELECT distinct_id FROM {database}.identities WHERE app = {app:String})
)
GROUP BY person;

-- Funnels and metrics defined on the dashboard (or POST .../definitions) and saved to the
-- app's definitions, beside those of tracktor.yaml: the newest version of each (kind, name)
-- counts; deleted = 1 takes it away.
CREATE TABLE IF NOT EXISTS {database}.saved_definitions
(
    app LowCardinality(String),
    kind LowCardinality(String),
    name String,
    definition String COMMENT 'JSON object, the same keys as in tracktor.yaml',
    version UInt64,
    deleted UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app, kind, name);
