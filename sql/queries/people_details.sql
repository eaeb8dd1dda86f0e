-- Drill-down details for a list of people: email (from their profile) and last action in the range.
SELECT e.person AS person, JSONExtractString(p.properties, 'email') AS email, e.last_action, e.last_ts
FROM
(
    SELECT person, argMax(event, ts) AS last_action, max(ts) AS last_ts
    FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
    WHERE person IN {people:Array(String)}
    GROUP BY person
) AS e
LEFT JOIN
(
    SELECT person_id, properties FROM {database}.persons FINAL
    WHERE app = {app:String} AND person_id IN {people:Array(String)}
) AS p ON p.person_id = e.person
ORDER BY person
