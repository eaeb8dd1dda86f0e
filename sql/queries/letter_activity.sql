SELECT status, person_id, email, subject, opens, clicks, letter, action_id, sent_at
FROM {database}.letter_activity(app = {app:String}, campaign = {campaign:String})
ORDER BY sent_at, person_id LIMIT {limit:UInt32}
