-- Daily value of an event metric: people who did {event} (uniq persons) and times it happened.
SELECT toDate(ts) AS day, uniqExact(person) AS people, count() AS times
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event = {event:String}
GROUP BY day
ORDER BY day
