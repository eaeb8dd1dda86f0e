-- People per funnel level (the highest step reached); level 0 (never did step 1) left out.
SELECT level, count() AS people
FROM {database}.funnel_levels(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                              steps = {steps:Array(String)}, window_ms = {window_ms:UInt64})
WHERE level > 0
GROUP BY level
