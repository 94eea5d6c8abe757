-- callbridge schema, version 7: who mixes a conference: callbridge's own bridge (every leg), or
-- Asterisk (serve --ari; Asterisk calls only, in one mixing bridge). Older rows: callbridge.

ALTER TABLE {p}conferences ADD COLUMN mixer VARCHAR(16) NOT NULL DEFAULT 'callbridge';
