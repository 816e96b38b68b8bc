-- Migration 3: friend requests, blocks, the admin role, and a version of each group's member list. Applied
-- statement by statement with recorded progress (src/store/mysql.rs), so none needs IF NOT EXISTS.

-- A pending friend request: `userid` asked `friendid`. Gone once answered, withdrawn or blocked.
CREATE TABLE friendrequest (
    userid INT NOT NULL,
    friendid INT NOT NULL,
    text VARCHAR(200) NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (userid, friendid),
    KEY ix_friendrequest_to (friendid)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- `userid` blocks `blockedid`.
CREATE TABLE userblock (
    userid INT NOT NULL,
    blockedid INT NOT NULL,
    PRIMARY KEY (userid, blockedid),
    KEY ix_userblock_blocked (blockedid)
) ENGINE = InnoDB;

ALTER TABLE groupuser MODIFY grouprole ENUM('creator', 'admin', 'normal') NOT NULL DEFAULT 'normal';

-- Bumped with every change of a group's members, in the same transaction (src/model.rs, Members).
ALTER TABLE allgroup ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
