-- Property history, segment membership and the daily event rollup.

-- Every property a setProperties call set (tracktor.events, kind "set"), one row per key.
-- value is the JSON text ('null' when the call deleted the key). The property metrics take,
-- per person and key, the value with the greatest (ts, event_id) as of a moment, the same
-- rule identity_merge applies to profiles.
CREATE TABLE IF NOT EXISTS {database}.property_sets
(
    app         LowCardinality(String),
    distinct_id String,
    key         String,
    value       String COMMENT 'JSON text; null = deleted',
    ts          DateTime64(3, 'UTC'),
    event_id    String
)
ENGINE = ReplacingMergeTree
ORDER BY (app, key, distinct_id, ts, event_id);

-- Segment entered / exited changes (tracktor.segments); the highest version per
-- (app, segment, person_id) is the person's current membership.
CREATE TABLE IF NOT EXISTS {database}.segment_changes
(
    app       LowCardinality(String),
    segment   String,
    person_id String,
    change    Enum8('entered' = 1, 'exited' = 2),
    version   UInt64,
    ts        DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (app, segment, person_id, version);

-- Current members of `segment`.
CREATE VIEW IF NOT EXISTS {database}.segment_members AS
SELECT person_id, max(ts) AS since
FROM {database}.segment_changes
WHERE app = {app:String} AND segment = {segment:String}
GROUP BY person_id
HAVING argMax(change, version) = 'entered';

-- Each distinct id's current person (ids with no row are their own person), as a view of
-- its own for the views below; person_events (0004) is redefined on it, so the rule lives
-- in one place. 0004 itself stays as applied: migrations are never edited once released.
CREATE VIEW IF NOT EXISTS {database}.person_ids AS
SELECT distinct_id, argMax(person_id, version) AS person_id
FROM {database}.identities
WHERE app = {app:String}
GROUP BY distinct_id;

CREATE OR REPLACE VIEW {database}.person_events AS
SELECT
    e.event_id AS event_id,
    e.kind AS kind,
    e.event AS event,
    e.distinct_id AS distinct_id,
    if(i.person_id = '', e.distinct_id, i.person_id) AS person,
    e.ts AS ts,
    e.data AS data
FROM
(
    SELECT event_id, kind, event, distinct_id, ts, data
    FROM {database}.events FINAL
    WHERE app = {app:String} AND ts >= {from_ts:DateTime64(3, 'UTC')} AND ts < {to_ts:DateTime64(3, 'UTC')}
) AS e
LEFT JOIN {database}.person_ids(app = {app:String}) AS i USING (distinct_id);

-- Daily rollup per app, event and distinct id, kept by a materialized view as events are
-- inserted. The count is a set of event ids, so a replayed insert adds nothing; the people
-- are counted at query time through person_ids, so merges stay exact.
CREATE TABLE IF NOT EXISTS {database}.event_daily
(
    app         LowCardinality(String),
    event       String,
    day         Date,
    distinct_id String,
    times       AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (app, event, day, distinct_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.event_daily_mv TO {database}.event_daily AS
SELECT app, event, toDate(ts) AS day, distinct_id, uniqExactState(event_id) AS times
FROM {database}.events
GROUP BY app, event, day, distinct_id;

-- Events stored before this migration (idempotent for the same reason).
INSERT INTO {database}.event_daily
SELECT app, event, toDate(ts) AS day, distinct_id, uniqExactState(event_id) AS times
FROM {database}.events
GROUP BY app, event, day, distinct_id;

-- The event metrics now read the rollup (whole days: from_ts's day to the day before to_ts).
CREATE OR REPLACE VIEW {database}.metric_event_daily AS
SELECT day, uniqExact(if(i.person_id = '', d.distinct_id, i.person_id)) AS people, sum(d.times) AS times
FROM
(
    SELECT day, distinct_id, uniqExactMerge(times) AS times
    FROM {database}.event_daily
    WHERE app = {app:String} AND event = {event:String}
      AND day >= toDate({from_ts:DateTime64(3, 'UTC')}) AND day < toDate({to_ts:DateTime64(3, 'UTC')})
    GROUP BY day, distinct_id
) AS d
LEFT JOIN {database}.person_ids(app = {app:String}) AS i USING (distinct_id)
GROUP BY day;

CREATE OR REPLACE VIEW {database}.metric_event_people AS
SELECT uniqExact(if(i.person_id = '', d.distinct_id, i.person_id)) AS people
FROM
(
    SELECT DISTINCT distinct_id
    FROM {database}.event_daily
    WHERE app = {app:String} AND event = {event:String}
      AND day >= toDate({from_ts:DateTime64(3, 'UTC')}) AND day < toDate({to_ts:DateTime64(3, 'UTC')})
) AS d
LEFT JOIN {database}.person_ids(app = {app:String}) AS i USING (distinct_id)
