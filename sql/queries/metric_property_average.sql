-- average_property_value: the daily rows (average NULL where the divisor is 0).
SELECT day, average, people
FROM {database}.metric_property_average_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                              property = {property:String}, divide_by = {divide_by:String}, event = {event:String})
ORDER BY day
