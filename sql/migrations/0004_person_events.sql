-- Events of one app in [from_ts, to_ts), attributed to the person each distinct id belongs to
-- now, so events sent before a merge count for the merged person. A parameterised view:
--   SELECT event, count() FROM tracktor.person_events(app = 'demo-video',
--       from_ts = '2026-01-01 00:00:00', to_ts = '2026-02-01 00:00:00') GROUP BY event
CREATE VIEW IF NOT EXISTS {database}.person_events AS
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
LEFT JOIN
(
    SELECT distinct_id, argMax(person_id, version) AS person_id
    FROM {database}.identities
    WHERE app = {app:String}
    GROUP BY distinct_id
) AS i USING (distinct_id)
