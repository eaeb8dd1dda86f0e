-- A person's newest events (of all their ids, derived events included), newest first.
SELECT ts, event, kind, distinct_id, data
FROM {database}.events FINAL
WHERE app = {app:String} AND distinct_id IN {ids:Array(String)}
ORDER BY ts DESC, event_id DESC
LIMIT {limit:UInt32}
