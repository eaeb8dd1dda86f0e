-- Time from a person's first A to their first B after it, for people who did both, by the
-- day of the first A: people and the sum of those times in seconds.
SELECT toDate(first_a) AS day, count() AS people, sum(seconds) AS seconds
FROM
(
    SELECT person,
           minIf(ts, event = {event_a:String}) AS first_a,
           arrayFilter(t -> t > first_a, groupArrayIf(ts, event = {event_b:String})) AS b_after,
           (toUnixTimestamp64Milli(arrayMin(b_after)) - toUnixTimestamp64Milli(first_a)) / 1000 AS seconds
    FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
    WHERE event IN ({event_a:String}, {event_b:String})
    GROUP BY person
    HAVING countIf(event = {event_a:String}) > 0 AND length(b_after) > 0
)
GROUP BY day
ORDER BY day
