-- average_property_value's divisor per day (people, people who did an event, or times set).
SELECT day, divisor
FROM {database}.metric_property_divisor_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                              property = {property:String}, divide_by = {divide_by:String}, event = {event:String})
ORDER BY day
