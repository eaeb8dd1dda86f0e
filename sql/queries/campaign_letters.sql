-- Per letter of a campaign: sent, opened (letters opened at least once), bounced, failed, clicked (letters), total_clicks.
SELECT letter, countIf(sent) AS sent, countIf(opens > 0) AS opened, countIf(bounced) AS bounced,
       countIf(failed) AS failed, countIf(clicks > 0) AS clicked, sum(clicks) AS total_clicks
FROM {database}.letter_activity(app = {app:String}, campaign = {campaign:String})
GROUP BY letter ORDER BY letter
