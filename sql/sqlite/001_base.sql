-- Migration 1: the schema of clusterchat before migrations existed (the original project's tables, widened).
-- Every statement is idempotent, so a database created before migrations takes it as a no-op. Same tables
-- and columns as sql/mysql/001_base.sql; SQLite's default BINARY collation compares names byte-exact.
CREATE TABLE IF NOT EXISTS user (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    password TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'offline' CHECK (state IN ('online', 'offline')),
    node TEXT
);
CREATE INDEX IF NOT EXISTS ix_user_node ON user (node);

CREATE TABLE IF NOT EXISTS friend (
    userid INTEGER NOT NULL,
    friendid INTEGER NOT NULL,
    PRIMARY KEY (userid, friendid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS allgroup (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    groupname TEXT NOT NULL UNIQUE,
    groupdesc TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS groupuser (
    groupid INTEGER NOT NULL,
    userid INTEGER NOT NULL,
    grouprole TEXT NOT NULL DEFAULT 'normal' CHECK (grouprole IN ('creator', 'normal')),
    PRIMARY KEY (groupid, userid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ix_groupuser_user ON groupuser (userid);

CREATE TABLE IF NOT EXISTS offlinemessage (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    userid INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_offline_user ON offlinemessage (userid, id);

CREATE TABLE IF NOT EXISTS node (
    id TEXT PRIMARY KEY,
    heartbeat INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS token (
    userid INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    created INTEGER NOT NULL
);
