-- Migration 1: the schema of clusterchat before migrations existed, for MySQL and MariaDB. Every statement
-- is idempotent, so a database created before migrations takes it as a no-op. Table and column names follow
-- the original C++ project; columns are widened where argon2 hashes, Unicode text or long chats need it.
--
-- Names are VARBINARY rather than utf8mb4_bin: utf8mb4_bin is a PAD SPACE collation, under which "alice"
-- and "alice " would collide, while PROTOCOL.md makes names byte-exact. 200 bytes = 50 four-byte characters.
CREATE TABLE IF NOT EXISTS user (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARBINARY(200) NOT NULL,
    password VARCHAR(255) CHARACTER SET ascii NOT NULL,
    state ENUM('online', 'offline') NOT NULL DEFAULT 'offline',
    node VARCHAR(128) NULL,
    UNIQUE KEY uq_user_name (name),
    KEY ix_user_node (node)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS friend (
    userid INT NOT NULL,
    friendid INT NOT NULL,
    PRIMARY KEY (userid, friendid)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS allgroup (
    id INT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    groupname VARBINARY(200) NOT NULL,
    groupdesc VARCHAR(200) NOT NULL DEFAULT '',
    UNIQUE KEY uq_allgroup_name (groupname)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS groupuser (
    groupid INT NOT NULL,
    userid INT NOT NULL,
    grouprole ENUM('creator', 'normal') NOT NULL DEFAULT 'normal',
    PRIMARY KEY (groupid, userid),
    KEY ix_groupuser_user (userid)
) ENGINE = InnoDB;

-- id keeps the order of arrival; MEDIUMTEXT holds a 16,384-character message in its JSON frame.
CREATE TABLE IF NOT EXISTS offlinemessage (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    userid INT NOT NULL,
    message MEDIUMTEXT NOT NULL,
    KEY ix_offline_user (userid, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per node: its last heartbeat (unix seconds, by the database's clock).
CREATE TABLE IF NOT EXISTS node (
    id VARCHAR(128) NOT NULL PRIMARY KEY,
    heartbeat BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Resume tokens (v2): at most one per user, stored as a SHA-256 hash; revoked at logout, expire after 30 days.
CREATE TABLE IF NOT EXISTS token (
    userid INT NOT NULL PRIMARY KEY,
    hash VARBINARY(64) NOT NULL,
    created BIGINT NOT NULL
) ENGINE = InnoDB;
