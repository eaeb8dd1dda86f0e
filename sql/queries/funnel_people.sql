-- The drill-down: people who reached step {step} (or, with {dropped}, reached it and went no further).
SELECT person
FROM {database}.funnel_levels(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                              steps = {steps:Array(String)}, window_ms = {window_ms:UInt64})
WHERE if({dropped:Bool}, level = {step:UInt32}, level >= {step:UInt32})
ORDER BY person
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
