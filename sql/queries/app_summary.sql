-- An app's events and the distinct people they belong to after identity merges, in [from_ts, to_ts).
SELECT count() AS events, uniqExact(person) AS people
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
