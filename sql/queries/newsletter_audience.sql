-- A newsletter's audience: the app's people (not merged away) with an email property.
SELECT person_id, properties FROM {database}.persons FINAL
WHERE app = {app:String} AND merged_into IS NULL AND JSONExtractString(properties, 'email') != ''
ORDER BY person_id
