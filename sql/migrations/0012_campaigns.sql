-- Workflow campaigns and letters (docs/workflows.md), read from the events their jobs write:
-- `Campaign step` (workflow_runner: one per block a person passes), `Letter sent`, `Letter
-- bounced`, `Letter failed` (bin/tracktor deliver), `Letter opened`, `Letter clicked` (the
-- collector's tracking links; clients cannot send events of these names). Each carries the
-- campaign (newsletters: newsletter:NAME).

-- How many entries passed each block of `campaign`, and how many people.
CREATE VIEW IF NOT EXISTS {database}.campaign_blocks AS
SELECT JSONExtractString(data, 'block') AS block, count() AS entered, uniqExact(person_id) AS people
FROM {database}.events FINAL
WHERE app = {app:String} AND event = 'Campaign step' AND kind = 'derived'
  AND JSONExtractString(data, 'campaign') = {campaign:String}
GROUP BY block;

-- Each letter of `campaign` sent to one person (an action): its status, opens and clicks.
CREATE VIEW IF NOT EXISTS {database}.letter_activity AS
SELECT
    JSONExtractString(data, 'action_id') AS action_id,
    anyIf(JSONExtractString(data, 'letter'), event IN ('Letter sent', 'Letter bounced', 'Letter failed')) AS letter,
    any(person_id) AS person_id,
    anyIf(JSONExtractString(data, 'email'), event IN ('Letter sent', 'Letter bounced', 'Letter failed')) AS email,
    anyIf(JSONExtractString(data, 'subject'), event IN ('Letter sent', 'Letter bounced', 'Letter failed')) AS subject,
    countIf(event = 'Letter sent') > 0 AS sent,
    countIf(event = 'Letter bounced') > 0 AS bounced,
    countIf(event = 'Letter failed') > 0 AS failed,
    countIf(event = 'Letter opened') AS opens,
    countIf(event = 'Letter clicked') AS clicks,
    multiIf(bounced, 'bounced', failed, 'failed', clicks > 0, 'clicked', opens > 0, 'opened', sent, 'sent', 'pending')
        AS status,
    minIf(ts, event IN ('Letter sent', 'Letter bounced', 'Letter failed')) AS sent_at
FROM {database}.events FINAL
WHERE app = {app:String} AND JSONExtractString(data, 'campaign') = {campaign:String}
  AND ((kind = 'derived' AND event IN ('Letter sent', 'Letter bounced', 'Letter failed'))
       OR (kind = 'track' AND event IN ('Letter opened', 'Letter clicked')))
GROUP BY action_id;
