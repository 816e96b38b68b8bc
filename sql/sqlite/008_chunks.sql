-- Migration 8: the log as a row per commit, its index in memory.
--
-- Until now every message was a row of `message`, indexed later by position (`position`), by cid
-- (`sent`) and per conversation (`conversation`, with its `hi` index) in sorted batches. On a busy node
-- those index entries still cost about half of the writer's time and three random pages a message
-- (docs/BENCHMARKS.md, "Where the SQLite log's cost is now"). Now a commit writes its messages as one
-- row of `chunk` (src/store/sqlite/chunk.rs), the positions, last times and who sent what are kept in
-- the store's memory and read back from the chunks' heads at start, a cid is a row of `sent` written
-- with its message, and read positions are `readpos` rows for every conversation (moved only by READ:
-- a participant's own messages count as read through the index). The messages themselves are moved
-- into chunks by the store right after this script (src/store/sqlite/log.rs, `convert_rows`), which then
-- drops `message`, `position`, `conversation` and `indexed`.
CREATE TABLE chunk (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    head BLOB NOT NULL,
    body BLOB NOT NULL
);

CREATE TABLE sent_at (
    sender INTEGER NOT NULL,
    cid TEXT NOT NULL,
    conv INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (sender, cid)
) WITHOUT ROWID;
INSERT OR IGNORE INTO sent_at (sender, cid, conv, pos, ts)
    SELECT sender, cid, conv, pos, ts FROM message WHERE cid IS NOT NULL ORDER BY seq;
DROP TABLE sent;
ALTER TABLE sent_at RENAME TO sent;

INSERT INTO readpos (userid, conv, pos)
    SELECT lo, id, lo_read FROM conversation WHERE id > 0 AND lo_read > 0
    ON CONFLICT (userid, conv) DO UPDATE SET pos = max(pos, excluded.pos);
INSERT INTO readpos (userid, conv, pos)
    SELECT hi, id, hi_read FROM conversation WHERE id > 0 AND hi_read > 0 AND hi <> lo
    ON CONFLICT (userid, conv) DO UPDATE SET pos = max(pos, excluded.pos);
