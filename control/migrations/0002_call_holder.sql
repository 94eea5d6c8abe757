-- callbridge schema, version 2: which node (and which worker of it) holds a live call.
-- A command for a call sent to any node is routed to its holder (control/call_commands.py), and
-- when a node's heartbeat lapses a survivor ends its calls (control/nodes.py). Rows written before
-- this migration have node_id '' and are never reaped: no node claims them.

ALTER TABLE {p}calls ADD COLUMN node_id VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE {p}calls ADD COLUMN worker_id INTEGER NOT NULL DEFAULT 0;
CREATE INDEX {p}ix_calls_live ON {p}calls (status, node_id, worker_id);
