-- Migration 7: a message is in a user's offline list at most once. A node that could not record a
-- message offline (storage gone at that moment) keeps the record and writes it again later; when the
-- first attempt's COMMIT did reach MariaDB but its answer was lost, the message was listed twice and
-- delivered twice. Pointers are now inserted with INSERT IGNORE against a unique key. SQLite needs no
-- such key: a commit there either happened or returned an error.
--
-- The list is copied into a table with the key, the first pointer of each message kept (a DELETE of
-- the duplicates in place would compare each row with every earlier one of its user: minutes for a
-- user with tens of thousands waiting), then swapped in. A step that fails runs again at the next start
-- (the copy ignores what it copied already; the swap is one statement). As with every migration, the
-- nodes of the old version are stopped first (README, "MySQL or MariaDB").
CREATE TABLE IF NOT EXISTS offline_once (
    id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    userid INT NOT NULL,
    conv BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    KEY ix_offline_user (userid, id),
    UNIQUE KEY ux_offline_once (userid, conv, pos)
) ENGINE = InnoDB;
INSERT IGNORE INTO offline_once (id, userid, conv, pos)
    SELECT id, userid, conv, pos FROM offlinemessage ORDER BY id;
RENAME TABLE offlinemessage TO offline_before, offline_once TO offlinemessage;
DROP TABLE offline_before;
