-- Migration 7: a message is in a user's offline list at most once. A node that could not record a
-- message offline (storage gone at that moment) keeps the record and writes it again later; when the
-- first attempt's COMMIT did reach MariaDB but its answer was lost, the message was listed twice and
-- delivered twice. Pointers are now inserted with INSERT IGNORE against this key; duplicates an older
-- server left are dropped first (the later ones: the list keeps its order). SQLite needs no such key: a
-- commit there either happened or returned an error.
DELETE o FROM offlinemessage o JOIN offlinemessage k
    ON k.userid = o.userid AND k.conv = o.conv AND k.pos = o.pos AND k.id < o.id;
ALTER TABLE offlinemessage ADD UNIQUE KEY ux_offline_once (userid, conv, pos);
