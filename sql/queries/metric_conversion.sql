-- Conversion A -> B, by day.
-- Non-repeatable: people whose A (any, within the range) is followed by a B, by the day of
--   their first A: a_count = people who did A, b_count = those of them who converted.
-- Repeatable: a_count = A events that day; b_count = B events that day that come after an A
--   of the same person (any earlier A in the range).
SELECT day, sum(a_count) AS a_count, sum(b_count) AS b_count
FROM
(
    SELECT toDate(first_a) AS day, 1 AS a_count, toUInt64(level = 2) AS b_count
    FROM
    (
        SELECT person,
               minIf(ts, event = {event_a:String}) AS first_a,
               windowFunnel({window_ms:UInt64})(toUInt64(toUnixTimestamp64Milli(ts)),
                   event = {event_a:String}, event = {event_b:String}) AS level
        FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
        WHERE event IN ({event_a:String}, {event_b:String}) AND NOT {repeatable:Bool}
        GROUP BY person
        HAVING level >= 1
    )
    UNION ALL
    SELECT toDate(ts) AS day,
           toUInt64(event = {event_a:String}) AS a_count,
           toUInt64(event = {event_b:String} AND first_a IS NOT NULL AND ts > first_a) AS b_count
    FROM
    (
        SELECT event, ts, min(if(event = {event_a:String}, toNullable(ts), NULL)) OVER (PARTITION BY person) AS first_a
        FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
        WHERE event IN ({event_a:String}, {event_b:String}) AND {repeatable:Bool}
    )
)
GROUP BY day
ORDER BY day
