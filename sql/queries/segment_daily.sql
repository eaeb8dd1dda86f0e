SELECT day, members FROM {database}.segment_members_daily(app = {app:String}, segment = {segment:String},
    from_ts = {from_ts:DateTime64(3, 'UTC')}, to_ts = {to_ts:DateTime64(3, 'UTC')}) ORDER BY day
