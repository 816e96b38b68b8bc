-- Migration 2: the message log, devices, per-device tokens, and an offline list that points into the log.
-- MySQL commits each statement of DDL by itself, so every statement here may run again after a crash
-- half-way (src/store/migrate.rs runs them in order and skips what is done); the old offline frames are
-- converted by src/store/mysql.rs in one transaction that deletes what it converted.

-- One row per conversation: its key (src/model.rs, Conv::key: a pair of user ids, or minus a group id),
-- the last position given out and the commit time of that message.
CREATE TABLE IF NOT EXISTS conversation (
    id BIGINT NOT NULL PRIMARY KEY,
    last_pos BIGINT NOT NULL,
    last_ts BIGINT NOT NULL
) ENGINE = InnoDB;

-- The log: every chat message, at its position in its conversation. `cid` is the sender's own id for
-- the message (unique per sender; NULLs do not collide), `time` the sender's time text, `ts` the commit
-- time in milliseconds. MEDIUMTEXT holds a 16,384-character message.
CREATE TABLE IF NOT EXISTS message (
    conv BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    sender INT NOT NULL,
    ts BIGINT NOT NULL,
    cid VARBINARY(256) NULL,
    time VARCHAR(255) NOT NULL,
    text MEDIUMTEXT NOT NULL,
    PRIMARY KEY (conv, pos),
    UNIQUE KEY ux_message_cid (sender, cid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Read positions, and who takes part in which one-to-one conversation (peer = the other one).
CREATE TABLE IF NOT EXISTS readpos (
    userid INT NOT NULL,
    conv BIGINT NOT NULL,
    peer INT NULL,
    pos BIGINT NOT NULL,
    PRIMARY KEY (userid, conv)
) ENGINE = InnoDB;

-- Messages that reached no device of their recipient: pointers into the log, oldest first. The old
-- table of rendered frames is renamed first, converted, then dropped.
RENAME TABLE offlinemessage TO offline_legacy;
CREATE TABLE IF NOT EXISTS offlinemessage (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    userid INT NOT NULL,
    conv BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    KEY ix_offline_user (userid, id)
) ENGINE = InnoDB;

-- Presence: one row per logged-in device, held by a node. user.state and user.node are no longer used.
CREATE TABLE IF NOT EXISTS device (
    userid INT NOT NULL,
    device VARBINARY(256) NOT NULL,
    node VARCHAR(128) NOT NULL,
    PRIMARY KEY (userid, device),
    KEY ix_device_node (node)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Resume tokens per device; a token issued before devices existed belongs to the device "default".
CREATE TABLE IF NOT EXISTS token_device (
    userid INT NOT NULL,
    device VARBINARY(256) NOT NULL,
    hash VARBINARY(64) NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (userid, device)
) ENGINE = InnoDB;
INSERT IGNORE INTO token_device (userid, device, hash, created) SELECT userid, 'default', hash, created FROM token;
DROP TABLE IF EXISTS token;
RENAME TABLE token_device TO token;
