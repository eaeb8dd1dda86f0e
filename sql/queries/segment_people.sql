SELECT person_id, email, properties, since FROM {database}.segment_people(app = {app:String}, segment = {segment:String})
ORDER BY person_id LIMIT {limit:UInt32}
