-- callbridge schema, version 3: conferences with audio (media/bridge.py). A conference's options
-- (entry/exit tones, a maximum of participants, where a call goes when it leaves: back to its
-- agent or hung up) and each participant's state (joined/left, mutes, volumes, moderator: the
-- conference ends when a moderator leaves). Rows written before this have the defaults.

ALTER TABLE {p}conferences ADD COLUMN tones INTEGER NOT NULL DEFAULT 1;
ALTER TABLE {p}conferences ADD COLUMN max_participants INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}conferences ADD COLUMN on_leave VARCHAR(16) NOT NULL DEFAULT 'agent';
ALTER TABLE {p}participants ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'joined';
ALTER TABLE {p}participants ADD COLUMN mute_send INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}participants ADD COLUMN mute_hear INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}participants ADD COLUMN talk_volume_pct INTEGER NOT NULL DEFAULT 100;
ALTER TABLE {p}participants ADD COLUMN listen_volume_pct INTEGER NOT NULL DEFAULT 100;
ALTER TABLE {p}participants ADD COLUMN moderator INTEGER NOT NULL DEFAULT 0;
ALTER TABLE {p}participants ADD COLUMN tm_leave VARCHAR(26) NULL;
