-- avg_time_between: people and total seconds per day of the first A.
SELECT day, people, seconds
FROM {database}.metric_time_between_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                          event_a = {event_a:String}, event_b = {event_b:String})
ORDER BY day
