-- Migration 3: friend requests, blocks, the admin role, and a version of each group's member list.

-- A pending friend request: `userid` asked `friendid`. Gone once answered, withdrawn or blocked.
CREATE TABLE friendrequest (
    userid INTEGER NOT NULL,
    friendid INTEGER NOT NULL,
    text TEXT NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (userid, friendid)
) WITHOUT ROWID;
CREATE INDEX ix_friendrequest_to ON friendrequest (friendid);

-- `userid` blocks `blockedid`.
CREATE TABLE userblock (
    userid INTEGER NOT NULL,
    blockedid INTEGER NOT NULL,
    PRIMARY KEY (userid, blockedid)
) WITHOUT ROWID;
CREATE INDEX ix_userblock_blocked ON userblock (blockedid);

-- The admin role. SQLite cannot change a CHECK constraint in place, so the table is rebuilt.
CREATE TABLE groupuser_roles (
    groupid INTEGER NOT NULL,
    userid INTEGER NOT NULL,
    grouprole TEXT NOT NULL DEFAULT 'normal' CHECK (grouprole IN ('creator', 'admin', 'normal')),
    PRIMARY KEY (groupid, userid)
) WITHOUT ROWID;
INSERT INTO groupuser_roles (groupid, userid, grouprole) SELECT groupid, userid, grouprole FROM groupuser;
DROP TABLE groupuser;
ALTER TABLE groupuser_roles RENAME TO groupuser;
CREATE INDEX ix_groupuser_user ON groupuser (userid);

-- Bumped with every change of a group's members, in the same transaction (src/model.rs, Members).
ALTER TABLE allgroup ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
