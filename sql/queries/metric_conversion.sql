-- conversion_rate: a_count and b_count per day.
SELECT day, a_count, b_count
FROM {database}.metric_conversion_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                        event_a = {event_a:String}, event_b = {event_b:String},
                                        repeatable = {repeatable:Bool}, window_ms = {window_ms:UInt64})
ORDER BY day
