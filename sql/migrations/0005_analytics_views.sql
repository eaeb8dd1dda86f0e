-- Analytics as parameterised views: the same answers for `bin/tracktor report`, the HTTP
-- API and BI tools (Grafana, Superset, Metabase, plain SQL). Every view takes
-- app, from_ts, to_ts (DateTime64(3, 'UTC'), [from_ts, to_ts)) and its own parameters;
-- docs/metrics.md says what each number means. Example:
--   SELECT level, count() FROM tracktor.funnel_levels(app = 'demo-video',
--       from_ts = '2026-11-01 00:00:00', to_ts = '2026-12-01 00:00:00',
--       steps = ['Site visit', 'Free movie view', 'Registration', 'Upgrade to Premium'],
--       window_ms = 2592000000) WHERE level > 0 GROUP BY level ORDER BY level

-- Funnel: how far each person got through `steps` (loose order, within window_ms of their
-- first step). Up to 32 steps, windowFunnel's limit: one condition per possible step; past
-- the last step `steps[i]` is '' and matches no event (names are never empty).
CREATE VIEW IF NOT EXISTS {database}.funnel_levels AS
SELECT
    person,
    windowFunnel({window_ms:UInt64})(toUInt64(toUnixTimestamp64Milli(ts)),
        event = {steps:Array(String)}[1],
        event = {steps:Array(String)}[2],
        event = {steps:Array(String)}[3],
        event = {steps:Array(String)}[4],
        event = {steps:Array(String)}[5],
        event = {steps:Array(String)}[6],
        event = {steps:Array(String)}[7],
        event = {steps:Array(String)}[8],
        event = {steps:Array(String)}[9],
        event = {steps:Array(String)}[10],
        event = {steps:Array(String)}[11],
        event = {steps:Array(String)}[12],
        event = {steps:Array(String)}[13],
        event = {steps:Array(String)}[14],
        event = {steps:Array(String)}[15],
        event = {steps:Array(String)}[16],
        event = {steps:Array(String)}[17],
        event = {steps:Array(String)}[18],
        event = {steps:Array(String)}[19],
        event = {steps:Array(String)}[20],
        event = {steps:Array(String)}[21],
        event = {steps:Array(String)}[22],
        event = {steps:Array(String)}[23],
        event = {steps:Array(String)}[24],
        event = {steps:Array(String)}[25],
        event = {steps:Array(String)}[26],
        event = {steps:Array(String)}[27],
        event = {steps:Array(String)}[28],
        event = {steps:Array(String)}[29],
        event = {steps:Array(String)}[30],
        event = {steps:Array(String)}[31],
        event = {steps:Array(String)}[32]) AS level
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event IN {steps:Array(String)}
GROUP BY person;

-- People who did `event` and times it happened, per day (people_did_event,
-- times_event_happened, avg_times_per_person).
CREATE VIEW IF NOT EXISTS {database}.metric_event_daily AS
SELECT toDate(ts) AS day, uniqExact(person) AS people, count() AS times
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event = {event:String}
GROUP BY day;

-- Distinct people who did `event` over the whole range (not the sum of the days).
CREATE VIEW IF NOT EXISTS {database}.metric_event_people AS
SELECT uniqExact(person) AS people
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event = {event:String};

-- Conversion event_a -> event_b per day. Non-repeatable: a_count = people whose first A
-- fell that day, b_count = those of them with a B after an A (within window_ms).
-- Repeatable: a_count = A events that day, b_count = B events that day after an earlier A
-- of the same person.
CREATE VIEW IF NOT EXISTS {database}.metric_conversion_daily AS
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
           toUInt64(event = {event_b:String} AND first_a IS NOT NULL AND ts > first_a) AS b_count
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
CREATE VIEW IF NOT EXISTS {database}.metric_time_between_daily AS
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
