-- Funnels again without filters as funnel_levels (0005's definition and parameters: the
-- simple view for BI tools, and the fastest), and with filters as funnel_levels_filtered.
-- 0007's single view with filters cost every funnel 2.5x over 10M events, filters or not;
-- even with its filters short-circuited it stays ~12% slower, hence two views.
CREATE OR REPLACE VIEW {database}.funnel_levels AS
SELECT
    person,
    windowFunnel({window_ms:UInt64})(toUInt64(toUnixTimestamp64Milli(ts)),
        event = {steps:Array(String)}[1],
        event = {steps:Array(String)}[2],
        event = {steps:Array(String)}[3],
        event = {steps:Array(String)}[4],
        event = {steps:Array(String)}[5],
        event = {steps:Array(String)}[6],
        event = {steps:Array(String)}[7],
        event = {steps:Array(String)}[8],
        event = {steps:Array(String)}[9],
        event = {steps:Array(String)}[10],
        event = {steps:Array(String)}[11],
        event = {steps:Array(String)}[12],
        event = {steps:Array(String)}[13],
        event = {steps:Array(String)}[14],
        event = {steps:Array(String)}[15],
        event = {steps:Array(String)}[16],
        event = {steps:Array(String)}[17],
        event = {steps:Array(String)}[18],
        event = {steps:Array(String)}[19],
        event = {steps:Array(String)}[20],
        event = {steps:Array(String)}[21],
        event = {steps:Array(String)}[22],
        event = {steps:Array(String)}[23],
        event = {steps:Array(String)}[24],
        event = {steps:Array(String)}[25],
        event = {steps:Array(String)}[26],
        event = {steps:Array(String)}[27],
        event = {steps:Array(String)}[28],
        event = {steps:Array(String)}[29],
        event = {steps:Array(String)}[30],
        event = {steps:Array(String)}[31],
        event = {steps:Array(String)}[32]) AS level
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event IN {steps:Array(String)}
GROUP BY person;

-- A step's data filter is short-circuited when the step has none; the person filter is
-- two sets built once: people whose profile meets the criteria, and, when the criteria
-- hold for an empty profile (not_set), people without a profile.
CREATE VIEW IF NOT EXISTS {database}.funnel_levels_filtered AS
SELECT
    person,
    windowFunnel({window_ms:UInt64})(toUInt64(toUnixTimestamp64Milli(ts)),
        event = {steps:Array(String)}[1] AND (empty({step_keys:Array(Array(String))}[1]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[1], {step_ops:Array(Array(String))}[1], {step_values:Array(Array(String))}[1])),
        event = {steps:Array(String)}[2] AND (empty({step_keys:Array(Array(String))}[2]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[2], {step_ops:Array(Array(String))}[2], {step_values:Array(Array(String))}[2])),
        event = {steps:Array(String)}[3] AND (empty({step_keys:Array(Array(String))}[3]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[3], {step_ops:Array(Array(String))}[3], {step_values:Array(Array(String))}[3])),
        event = {steps:Array(String)}[4] AND (empty({step_keys:Array(Array(String))}[4]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[4], {step_ops:Array(Array(String))}[4], {step_values:Array(Array(String))}[4])),
        event = {steps:Array(String)}[5] AND (empty({step_keys:Array(Array(String))}[5]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[5], {step_ops:Array(Array(String))}[5], {step_values:Array(Array(String))}[5])),
        event = {steps:Array(String)}[6] AND (empty({step_keys:Array(Array(String))}[6]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[6], {step_ops:Array(Array(String))}[6], {step_values:Array(Array(String))}[6])),
        event = {steps:Array(String)}[7] AND (empty({step_keys:Array(Array(String))}[7]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[7], {step_ops:Array(Array(String))}[7], {step_values:Array(Array(String))}[7])),
        event = {steps:Array(String)}[8] AND (empty({step_keys:Array(Array(String))}[8]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[8], {step_ops:Array(Array(String))}[8], {step_values:Array(Array(String))}[8])),
        event = {steps:Array(String)}[9] AND (empty({step_keys:Array(Array(String))}[9]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[9], {step_ops:Array(Array(String))}[9], {step_values:Array(Array(String))}[9])),
        event = {steps:Array(String)}[10] AND (empty({step_keys:Array(Array(String))}[10]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[10], {step_ops:Array(Array(String))}[10], {step_values:Array(Array(String))}[10])),
        event = {steps:Array(String)}[11] AND (empty({step_keys:Array(Array(String))}[11]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[11], {step_ops:Array(Array(String))}[11], {step_values:Array(Array(String))}[11])),
        event = {steps:Array(String)}[12] AND (empty({step_keys:Array(Array(String))}[12]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[12], {step_ops:Array(Array(String))}[12], {step_values:Array(Array(String))}[12])),
        event = {steps:Array(String)}[13] AND (empty({step_keys:Array(Array(String))}[13]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[13], {step_ops:Array(Array(String))}[13], {step_values:Array(Array(String))}[13])),
        event = {steps:Array(String)}[14] AND (empty({step_keys:Array(Array(String))}[14]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[14], {step_ops:Array(Array(String))}[14], {step_values:Array(Array(String))}[14])),
        event = {steps:Array(String)}[15] AND (empty({step_keys:Array(Array(String))}[15]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[15], {step_ops:Array(Array(String))}[15], {step_values:Array(Array(String))}[15])),
        event = {steps:Array(String)}[16] AND (empty({step_keys:Array(Array(String))}[16]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[16], {step_ops:Array(Array(String))}[16], {step_values:Array(Array(String))}[16])),
        event = {steps:Array(String)}[17] AND (empty({step_keys:Array(Array(String))}[17]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[17], {step_ops:Array(Array(String))}[17], {step_values:Array(Array(String))}[17])),
        event = {steps:Array(String)}[18] AND (empty({step_keys:Array(Array(String))}[18]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[18], {step_ops:Array(Array(String))}[18], {step_values:Array(Array(String))}[18])),
        event = {steps:Array(String)}[19] AND (empty({step_keys:Array(Array(String))}[19]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[19], {step_ops:Array(Array(String))}[19], {step_values:Array(Array(String))}[19])),
        event = {steps:Array(String)}[20] AND (empty({step_keys:Array(Array(String))}[20]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[20], {step_ops:Array(Array(String))}[20], {step_values:Array(Array(String))}[20])),
        event = {steps:Array(String)}[21] AND (empty({step_keys:Array(Array(String))}[21]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[21], {step_ops:Array(Array(String))}[21], {step_values:Array(Array(String))}[21])),
        event = {steps:Array(String)}[22] AND (empty({step_keys:Array(Array(String))}[22]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[22], {step_ops:Array(Array(String))}[22], {step_values:Array(Array(String))}[22])),
        event = {steps:Array(String)}[23] AND (empty({step_keys:Array(Array(String))}[23]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[23], {step_ops:Array(Array(String))}[23], {step_values:Array(Array(String))}[23])),
        event = {steps:Array(String)}[24] AND (empty({step_keys:Array(Array(String))}[24]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[24], {step_ops:Array(Array(String))}[24], {step_values:Array(Array(String))}[24])),
        event = {steps:Array(String)}[25] AND (empty({step_keys:Array(Array(String))}[25]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[25], {step_ops:Array(Array(String))}[25], {step_values:Array(Array(String))}[25])),
        event = {steps:Array(String)}[26] AND (empty({step_keys:Array(Array(String))}[26]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[26], {step_ops:Array(Array(String))}[26], {step_values:Array(Array(String))}[26])),
        event = {steps:Array(String)}[27] AND (empty({step_keys:Array(Array(String))}[27]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[27], {step_ops:Array(Array(String))}[27], {step_values:Array(Array(String))}[27])),
        event = {steps:Array(String)}[28] AND (empty({step_keys:Array(Array(String))}[28]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[28], {step_ops:Array(Array(String))}[28], {step_values:Array(Array(String))}[28])),
        event = {steps:Array(String)}[29] AND (empty({step_keys:Array(Array(String))}[29]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[29], {step_ops:Array(Array(String))}[29], {step_values:Array(Array(String))}[29])),
        event = {steps:Array(String)}[30] AND (empty({step_keys:Array(Array(String))}[30]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[30], {step_ops:Array(Array(String))}[30], {step_values:Array(Array(String))}[30])),
        event = {steps:Array(String)}[31] AND (empty({step_keys:Array(Array(String))}[31]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[31], {step_ops:Array(Array(String))}[31], {step_values:Array(Array(String))}[31])),
        event = {steps:Array(String)}[32] AND (empty({step_keys:Array(Array(String))}[32]) OR tracktor_json_matches(data, {step_keys:Array(Array(String))}[32], {step_ops:Array(Array(String))}[32], {step_values:Array(Array(String))}[32]))) AS level
FROM {database}.person_events(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')})
WHERE event IN {steps:Array(String)}
  AND (empty({person_keys:Array(String)})
       OR person IN (SELECT person_id FROM {database}.persons FINAL
                     WHERE app = {app:String} AND notEmpty({person_keys:Array(String)})
                       AND tracktor_json_matches(properties, {person_keys:Array(String)}, {person_ops:Array(String)}, {person_values:Array(String)}))
       OR (tracktor_json_matches('{}', {person_keys:Array(String)}, {person_ops:Array(String)}, {person_values:Array(String)})
           AND person NOT IN (SELECT person_id FROM {database}.persons FINAL
                              WHERE app = {app:String} AND notEmpty({person_keys:Array(String)}))))
GROUP BY person
