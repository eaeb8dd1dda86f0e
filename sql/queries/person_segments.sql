-- The segments a person is in now, with when they entered.
SELECT segment, max(ts) AS since
FROM {database}.segment_changes
WHERE app = {app:String} AND person_id = {person:String}
GROUP BY segment
HAVING argMax(change, version) = 'entered'
ORDER BY segment
