SELECT person_id FROM {database}.segment_members(app = {app:String}, segment = {segment:String})
