-- people_did_event / times_event_happened / avg_times_per_person: the daily rows.
SELECT day, people, times
FROM {database}.metric_event_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                   event = {event:String})
ORDER BY day
