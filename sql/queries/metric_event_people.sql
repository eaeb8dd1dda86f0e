-- Distinct people who did {event} over the whole range.
SELECT people
FROM {database}.metric_event_people(app = {app:String}, from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')},
                                    event = {event:String})
