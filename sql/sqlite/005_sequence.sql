-- Migration 5: messages are stored in the order they commit, and indexed by position later.
--
-- Until now `message` was keyed by (conv, pos), so every commit wrote a leaf of that tree, a `conversation`
-- row and its `hi` index entry at three random places in the file (about 20 KB of pages per message on
-- a busy node: docs/BENCHMARKS.md, "Storage layouts replayed by hand"). Now a commit appends at the end of
-- `message` (its `seq`), and the writer brings the rest up to date from the messages past `indexed.seq`
-- (the tail) in one sorted transaction per thousand or so (src/store/sqlite/log.rs): `position` finds a
-- message by (conv, pos), `sent` by its sender's cid, and the `conversation` and group `readpos` rows
-- take their last positions and the senders' read positions. Reads add the tail to what is indexed.
--
-- AUTOINCREMENT: a seq is never given out twice, not even after the last messages are deleted (a
-- dissolved group), so a new message can never fall below the watermark unindexed.
CREATE TABLE message_seq (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conv INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cid TEXT,
    time TEXT NOT NULL,
    text TEXT NOT NULL
);
INSERT INTO message_seq (conv, pos, sender, ts, cid, time, text)
    SELECT conv, pos, sender, ts, cid, time, text FROM message ORDER BY ts, conv, pos;
DROP TABLE message;
ALTER TABLE message_seq RENAME TO message;

CREATE TABLE position (
    conv INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (conv, pos)
) WITHOUT ROWID;
INSERT INTO position (conv, pos, seq) SELECT conv, pos, seq FROM message ORDER BY conv, pos;

CREATE TABLE sent (
    sender INTEGER NOT NULL,
    cid TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (sender, cid)
) WITHOUT ROWID;
INSERT INTO sent (sender, cid, seq) SELECT sender, cid, seq FROM message WHERE cid IS NOT NULL;

-- The last seq whose message is in `position`, `sent` and the conversation rows: one row.
CREATE TABLE indexed (seq INTEGER NOT NULL);
INSERT INTO indexed (seq) SELECT COALESCE(MAX(seq), 0) FROM message;
