-- Migration 2: the message log, devices, per-device tokens, and an offline list that points into the log.
-- Runs in one transaction with the conversion of the old offline frames (src/store/migrate.rs).

-- The old offline list held rendered frames; they are converted into log messages and pointers, then
-- this table is dropped.
ALTER TABLE offlinemessage RENAME TO offline_legacy;
DROP INDEX IF EXISTS ix_offline_user;

-- One row per conversation: its key (src/model.rs, Conv::key: a pair of user ids, or minus a group id),
-- the last position given out and the commit time of that message.
CREATE TABLE conversation (
    id INTEGER PRIMARY KEY,
    last_pos INTEGER NOT NULL,
    last_ts INTEGER NOT NULL
);

-- The log: every chat message, at its position in its conversation. `cid` is the sender's own id for
-- the message (unique per sender), `time` the sender's time text, `ts` the commit time in milliseconds.
CREATE TABLE message (
    conv INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cid TEXT,
    time TEXT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (conv, pos)
) WITHOUT ROWID;
CREATE UNIQUE INDEX ux_message_cid ON message (sender, cid) WHERE cid IS NOT NULL;

-- Read positions, and who takes part in which one-to-one conversation: both participants get a row
-- (peer = the other one) at its first message. Group rows (peer NULL) appear at a member's first READ or
-- message.
CREATE TABLE readpos (
    userid INTEGER NOT NULL,
    conv INTEGER NOT NULL,
    peer INTEGER,
    pos INTEGER NOT NULL,
    PRIMARY KEY (userid, conv)
) WITHOUT ROWID;

-- Messages that reached no device of their recipient: pointers into the log, oldest first.
CREATE TABLE offlinemessage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    userid INTEGER NOT NULL,
    conv INTEGER NOT NULL,
    pos INTEGER NOT NULL
);
CREATE INDEX ix_offline_user ON offlinemessage (userid, id);

-- Presence: one row per logged-in device, held by a node (whose heartbeat keeps it alive). The columns
-- user.state and user.node of migration 1 are no longer read or written.
CREATE TABLE device (
    userid INTEGER NOT NULL,
    device TEXT NOT NULL,
    node TEXT NOT NULL,
    PRIMARY KEY (userid, device)
) WITHOUT ROWID;
CREATE INDEX ix_device_node ON device (node);

-- Resume tokens per device; a token issued before devices existed belongs to the device "default".
CREATE TABLE token_device (
    userid INTEGER NOT NULL,
    device TEXT NOT NULL,
    hash BLOB NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (userid, device)
) WITHOUT ROWID;
INSERT INTO token_device (userid, device, hash, created) SELECT userid, 'default', hash, created FROM token;
DROP TABLE token;
ALTER TABLE token_device RENAME TO token;
