-- "After" includes "at the same moment" everywhere, as windowFunnel has it for funnels:
-- timestamps often have whole-second resolution (the seed's ts), so calls made in one
-- second would otherwise never follow each other. 0005's repeatable conversion and time
-- between A and B counted only a B strictly after the first A; they now count a B at the
-- same moment too (0 seconds), like the non-repeatable conversion always did.

-- Conversion event_a -> event_b per day. Non-repeatable: a_count = people whose first A
-- fell that day, b_count = those of them with a B after an A (within window_ms).
-- Repeatable: a_count = A events that day, b_count = B events that day after an earlier A
-- of the same person.
CREATE OR REPLACE VIEW {database}.metric_conversion_daily AS
SELECT day, sum(a_count) AS a_count, sum(b_count) AS b_count
FROM
(
    SELECT toDate(first_a) AS day, toUInt64(1) AS a_count, toUInt64(level = 2) AS b_count
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
           toUInt64(event = {event_b:String} AND first_a IS NOT NULL AND ts >= first_a) AS b_count
    FROM
    (
        SELECT event, ts, min(if(event = {event_a:String}, toNullable(ts), NULL)) OVER (PARTITION BY person) AS first_a
        FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
        WHERE event IN ({event_a:String}, {event_b:String}) AND {repeatable:Bool}
    )
)
GROUP BY day;

-- Time from a person's first event_a to their first event_b after it, for people who did
-- both, by the day of the first A: people and the sum of those times in seconds.
CREATE OR REPLACE VIEW {database}.metric_time_between_daily AS
SELECT toDate(first_a) AS day, count() AS people, sum(seconds) AS seconds
FROM
(
    SELECT person,
           minIf(ts, event = {event_a:String}) AS first_a,
           arrayFilter(t -> t >= first_a, groupArrayIf(ts, event = {event_b:String})) AS b_after,
           (toUnixTimestamp64Milli(arrayMin(b_after)) - toUnixTimestamp64Milli(first_a)) / 1000 AS seconds
    FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
    WHERE event IN ({event_a:String}, {event_b:String})
    GROUP BY person
    HAVING countIf(event = {event_a:String}) > 0 AND length(b_after) > 0
)
GROUP BY day
