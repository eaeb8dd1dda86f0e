-- One person, asked for by any of their ids: the person it resolves to after merges, all
-- their distinct ids and their profile (no row: no identity, profile or event has the id).
SELECT r.person AS person, ids.ids, if(p.properties = '', '{}', p.properties) AS properties, p.ts AS updated
FROM
(
    SELECT if(person_id = '', {id:String}, person_id) AS person
    FROM (SELECT argMax(person_id, version) AS person_id FROM {database}.identities
          WHERE app = {app:String} AND distinct_id = {id:String})
) AS r
INNER JOIN {database}.people_ids(app = {app:String}) AS ids ON ids.person = r.person
LEFT JOIN
(
    SELECT person_id, properties, ts FROM {database}.persons FINAL WHERE app = {app:String}
) AS p ON p.person_id = r.person
