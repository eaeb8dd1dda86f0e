-- total_property_value (and average_property_value's numerator): the daily rows.
SELECT day, total, people
FROM {database}.metric_property_total_daily(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                            property = {property:String}, crit_keys = {crit_keys:Array(String)},
                                            crit_ops = {crit_ops:Array(String)}, crit_values = {crit_values:Array(String)})
ORDER BY day
