-- The segments an app has had members in (those defined while running included).
SELECT DISTINCT segment FROM {database}.segment_changes WHERE app = {app:String} ORDER BY segment
