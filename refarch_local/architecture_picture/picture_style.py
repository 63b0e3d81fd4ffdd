"""How the architecture picture looks: where each stack goes, the columns inside a box, colours, sizes.

Presentation only; what is drawn comes from the graph (refarch_local.architecture_picture.graph).
"""

FONT = "Helvetica, Arial, sans-serif"
# (band, position in band): "top" is drawn above the middle band, starting over its second box.
STACK_PLACES = {
    "Frontend": ("middle", 0),
    "Data": ("middle", 1),
    "Emu": ("middle", 2),
    "PineconeIndex": ("middle", 3),
    "Pelican": ("top", 0),
    "Reindex": ("top", 1),
}
KIND_COLUMNS = {
    "cdn": 0,
    "load balancer": 0,
    "service": 0,
    "schedule": 0,
    "database": 0,
    "function": 0,
    "vector index": 0,
    "secret": 0,
    # Dead-letter queues stand under the database, so the queues' left sides are free for the senders
    # above and their right sides face the functions they feed.
    "dead-letter queue": 0,
    "state machine": 1,
    "queue": 1,
}
KIND_ORDER = (
    "cdn",
    "load balancer",
    "service",
    "schedule",
    "state machine",
    "vector index",
    "database",
    "function",
    "queue",
    "dead-letter queue",
    "secret",
)
# kind -> (stripe colour, fill, caption shown above the label)
KIND_STYLES = {
    "cdn": ("#8c4fff", "#f4efff", "CloudFront"),
    "load balancer": ("#8c4fff", "#f4efff", "Load balancer"),
    "service": ("#ed7100", "#fff4e8", "ECS service"),
    "function": ("#ed7100", "#fff4e8", "Lambda"),
    "state machine": ("#e7157b", "#fdeef5", "State machine"),
    "schedule": ("#e7157b", "#fdeef5", "EventBridge rule"),
    "queue": ("#e7157b", "#fdeef5", "SQS queue"),
    "dead-letter queue": ("#c23b22", "#fbeceb", "SQS dead-letter queue"),
    "database": ("#3b48cc", "#eef0fc", "RDS"),
    "vector index": ("#01a88d", "#e8f7f4", "Vector index"),
    "secret": ("#dd344c", "#fdeef0", "Secret"),
}
# edge kind -> (colour, dash pattern, width, legend text); "reads" (secrets) is shown inside the nodes instead.
EDGE_STYLES = {
    "request": ("#444444", "", 2.2, "HTTP request"),
    "sends": ("#d9822b", "", 1.8, "sends messages (sqs:SendMessage)"),
    "invokes": ("#3b6fb6", "", 1.8, "invokes (event source mapping, state machine)"),
    "dead-letters": ("#c23b22", "2 3", 1.4, "dead-letters after N receives"),
    "starts": ("#7a5bbf", "6 3", 1.6, "starts (state machine)"),
    "triggers": ("#7a5bbf", "6 3", 1.6, "triggers on a schedule"),
    "uses": ("#01a88d", "", 1.6, "reads / writes the vector index"),
    "connects": ("#9a9a9a", "4 3", 1.1, "connects to Postgres (its own login)"),
}
NODE_GAP, COLUMN_GAP, BOX_PAD, TITLE_H, BAND_GAP, STACK_GAP = 16, 34, 14, 30, 56, 52
LINE_H = {"caption": 12, "label": 17, "detail": 13, "extra": 13}
MARGIN = 24
