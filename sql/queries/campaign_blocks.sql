SELECT block, entered, people FROM {database}.campaign_blocks(app = {app:String}, campaign = {campaign:String})
ORDER BY block
