-- Segments over time and their members with their profiles (segment_eval's changes).

-- Members of `segment` at the end of each day of [from_ts, to_ts): people whose latest
-- change before the day ended was 'entered'.
CREATE VIEW IF NOT EXISTS {database}.segment_members_daily AS
SELECT day, toUInt64(countIf(seen AND last = 'entered')) AS members
FROM
(
    SELECT person_id, day,
           countIf(ts < toDateTime64(day + 1, 3, 'UTC')) > 0 AS seen,
           argMaxIf(toString(change), (ts, version), ts < toDateTime64(day + 1, 3, 'UTC')) AS last
    FROM {database}.segment_changes FINAL
    ARRAY JOIN tracktor_days({from_ts:DateTime64(3, 'UTC')}, {to_ts:DateTime64(3, 'UTC')}) AS day
    WHERE app = {app:String} AND segment = {segment:String} AND ts < {to_ts:DateTime64(3, 'UTC')}
    GROUP BY person_id, day
)
GROUP BY day;

-- Current members of `segment` with their profile: id, email, properties (JSON), since when.
CREATE VIEW IF NOT EXISTS {database}.segment_people AS
SELECT m.person_id AS person_id, JSONExtractString(p.properties, 'email') AS email,
       if(p.properties = '', '{}', p.properties) AS properties, m.since AS since
FROM {database}.segment_members(app = {app:String}, segment = {segment:String}) AS m
LEFT JOIN
(
    SELECT person_id, properties FROM {database}.persons FINAL WHERE app = {app:String}
) AS p ON p.person_id = m.person_id
