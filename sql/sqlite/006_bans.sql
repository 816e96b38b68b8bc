-- Migration 6: bans. Groups are joined by their number (ADD_GROUP), so a member removed by GROUP_KICK
-- could join again at once and a kick would mean nothing. A kick now records a ban, in the kick's
-- transaction; ADD_GROUP refuses a banned user (105) until the creator or an admin lets them back
-- (GROUP_UNBAN). Leaving by oneself bans nothing. Dissolving a group deletes its bans.
CREATE TABLE groupban (
    groupid INTEGER NOT NULL,
    userid INTEGER NOT NULL,
    PRIMARY KEY (groupid, userid)
) WITHOUT ROWID;
