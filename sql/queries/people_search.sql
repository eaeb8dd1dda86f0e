-- The People list and its search: the app's persons after identity merges, each with all
-- their distinct ids and their profile. With {key} = '' a person matches when {q} is empty,
-- is one of their ids (an old anonymous id finds the person it was merged into), or is in
-- their email (any case); with a {key}, when their property {key} is {value} (its text, or
-- its JSON for numbers and booleans). A page of {limit} from {offset}, by person id, with
-- the number of all matches.
SELECT i.person, i.ids, JSONExtractString(p.properties, 'email') AS email,
       if(p.properties = '', '{}', p.properties) AS properties, count() OVER () AS matches
FROM {database}.people_ids(app = {app:String}) AS i
LEFT JOIN
(
    SELECT person_id, properties FROM {database}.persons FINAL
    WHERE app = {app:String} AND merged_into IS NULL
) AS p ON p.person_id = i.person
WHERE if({key:String} = '',
         {q:String} = '' OR has(i.ids, {q:String})
             OR positionCaseInsensitiveUTF8(JSONExtractString(p.properties, 'email'), {q:String}) > 0,
         JSONHas(p.properties, {key:String}) AND (JSONExtractString(p.properties, {key:String}) = {value:String}
             OR JSONExtractRaw(p.properties, {key:String}) = {value:String}))
ORDER BY i.person
LIMIT {limit:UInt32} OFFSET {offset:UInt32}
