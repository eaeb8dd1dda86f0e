-- Distinct people who did {event} over the whole range (not the sum of the daily counts).
SELECT uniqExact(person) AS people
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event = {event:String}
