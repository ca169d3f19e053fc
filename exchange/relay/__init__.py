"""Everything that moves envelopes between the node's database and the broker: the one
outbox publisher, the one inbound pipeline (messages and case updates), and receipts."""
