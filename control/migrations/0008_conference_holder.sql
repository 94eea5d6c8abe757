-- callbridge schema, version 8: which node (and worker) holds a conference's bridge. The first
-- call to join claims it (control/conference_links.py); calls of other nodes join that bridge
-- over an inter-node link, and actions on the conference run there. Older rows: '' (nobody).

ALTER TABLE {p}conferences ADD COLUMN node_id VARCHAR(64) NOT NULL DEFAULT '';
ALTER TABLE {p}conferences ADD COLUMN worker_id INTEGER NOT NULL DEFAULT 0;
