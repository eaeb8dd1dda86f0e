-- The drill-down: people who reached step {step} (or, with {dropped}, reached it and went no further). With step and person filters.
SELECT person
FROM {database}.funnel_levels_filtered(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                              steps = {steps:Array(String)}, window_ms = {window_ms:UInt64},
                              step_keys = {step_keys:Array(Array(String))}, step_ops = {step_ops:Array(Array(String))},
                              step_values = {step_values:Array(Array(String))}, person_keys = {person_keys:Array(String)},
                              person_ops = {person_ops:Array(String)}, person_values = {person_values:Array(String)})
WHERE if({dropped:Bool}, level = {step:UInt32}, level >= {step:UInt32})
ORDER BY person
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
