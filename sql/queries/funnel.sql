-- Funnel levels: how far each person got through the ordered steps, loosely ordered (other
-- events may come between steps), within {window_ms} of their first step. The step
-- conditions `event = {step_N:String}` replace /*STEPS*/, one per step; every value is a
-- parameter. tracktor/analytics.py counts people per level, or lists them (drill-down).
SELECT
    person,
    windowFunnel({window_ms:UInt64})(toUInt64(toUnixTimestamp64Milli(ts)), /*STEPS*/) AS level
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event IN {steps:Array(String)}
GROUP BY person
