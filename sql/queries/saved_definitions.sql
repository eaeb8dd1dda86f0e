-- An app's saved funnels and metrics (sql/migrations/0011), the newest version of each.
SELECT kind, name, argMax(definition, version) AS definition
FROM {database}.saved_definitions
WHERE app = {app:String}
GROUP BY kind, name
HAVING argMax(deleted, version) = 0
ORDER BY kind, name
