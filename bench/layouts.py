#!/usr/bin/env python3
"""By-hand replay of the one-to-one bench's appends on SQLite storage layouts (issue 10's open target).

    python3 bench/layouts.py LAYOUT [MESSAGES]      e.g. python3 bench/layouts.py now 200000

Appends MESSAGES 64-byte messages between random pairs of 1,000 users (as `chat-bench one` does: nearly
every message opens a conversation), 32 a transaction, in WAL mode with synchronous=NORMAL, a 64 MiB cache
and a passive checkpoint every 40 commits (the node's every 100 ms at about 12,000 msg/s), then prints
this process's CPU and the bytes it wrote per message. Python's own share is the `none` layout's. It is
a model, not the node: Python's sqlite3 and Debian's SQLite, not rusqlite's bundled one; no cids, no
offline pointers, no read positions. LAYOUT is one of:

  now      the schema of migration 4: `conversation` upserted (RETURNING the position), its `hi` index,
           `message` keyed by (conv, pos)
  seqidx   `message` in append order (rowid) with a unique (conv, pos) index; `conversation` as `now`
  seq      `message` in append order, no index; positions from memory (one writer); a `conversation`
           row inserted only with a conversation's first message
  lsm      `message` in append order; positions from memory; the (conv, pos) -> rowid index and the
           `conversation` rows written later, sorted, in one transaction per FLUSH_EVERY * 1,280 messages
           (environment, default 1)
  seqonly  `message` in append order and nothing else (the floor)
  none     no statements (Python's cost)
"""
import os
import random
import sqlite3
import sys
import time

BATCH = 32
CHECKPOINT_EVERY = 40
TEXT = "x" * 64
SCHEMA = {
    "conversation": "CREATE TABLE conversation (id INTEGER PRIMARY KEY, last_pos INTEGER NOT NULL, "
    "last_ts INTEGER NOT NULL, lo INTEGER, hi INTEGER, lo_read INTEGER NOT NULL DEFAULT 0, "
    "hi_read INTEGER NOT NULL DEFAULT 0); CREATE INDEX ix_conversation_hi ON conversation (hi);",
    "keyed": "CREATE TABLE message (conv INTEGER NOT NULL, pos INTEGER NOT NULL, sender INTEGER NOT NULL, "
    "ts INTEGER NOT NULL, cid TEXT, time TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (conv, pos)) "
    "WITHOUT ROWID;",
    "appended": "CREATE TABLE message (seq INTEGER PRIMARY KEY, conv INTEGER NOT NULL, pos INTEGER NOT NULL, "
    "sender INTEGER NOT NULL, ts INTEGER NOT NULL, cid TEXT, time TEXT NOT NULL, text TEXT NOT NULL);",
    "pos_index": "CREATE UNIQUE INDEX ux_message_pos ON message (conv, pos);",
    "position": "CREATE TABLE position (conv INTEGER NOT NULL, pos INTEGER NOT NULL, seq INTEGER NOT NULL, "
    "PRIMARY KEY (conv, pos)) WITHOUT ROWID;",
}
TABLES = {
    "now": ["conversation", "keyed"],
    "seqidx": ["conversation", "appended", "pos_index"],
    "seq": ["conversation", "appended"],
    "lsm": ["conversation", "appended", "position"],
    "seqonly": ["appended"],
    "none": [],
}
UPSERT = ("INSERT INTO conversation (id, lo, hi, last_pos, last_ts) VALUES (?, ?, ?, 1, ?) "
          "ON CONFLICT (id) DO UPDATE SET last_pos = last_pos + 1, last_ts = excluded.last_ts "
          "RETURNING last_pos")
INSERT = "INSERT INTO message (conv, pos, sender, ts, cid, time, text) VALUES (?, ?, ?, ?, NULL, ?, ?)"


class Replay:
    def __init__(self, layout):
        self.layout = layout
        path = f"/tmp/clusterchat-layouts-{layout}.db"
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                              "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-65536;")
        for table in TABLES[layout]:
            self.db.executescript(SCHEMA[table])
        self.last = {}  # conversation -> last position, for the layouts that keep it in memory
        self.unindexed = []  # (conv, pos, seq) not yet in `position` (lsm)
        self.touched = {}  # conversation -> its row's values not yet written (lsm)

    def append(self, sender, peer, ts):
        lo, hi = min(sender, peer), max(sender, peer)
        key = lo * 2**31 + hi
        if self.layout in ("now", "seqidx"):
            pos = self.db.execute(UPSERT, (key, lo, hi, ts)).fetchone()[0]
        else:
            pos = self.last.get(key, 0) + 1
            self.last[key] = pos
        if self.layout == "none":
            return
        if self.layout == "seq" and pos == 1:
            self.db.execute(UPSERT, (key, lo, hi, ts)).fetchone()
        seq = self.db.execute(INSERT, (key, pos, sender, ts, "2026-12-07 10:00:00", TEXT)).lastrowid
        if self.layout == "lsm":
            self.unindexed.append((key, pos, seq))
            self.touched[key] = (lo, hi, pos, ts)

    def flush_index(self):
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany("INSERT INTO position (conv, pos, seq) VALUES (?, ?, ?)", sorted(self.unindexed))
        self.db.executemany(
            "INSERT INTO conversation (id, lo, hi, last_pos, last_ts) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_pos = excluded.last_pos, last_ts = excluded.last_ts",
            sorted((k,) + v for k, v in self.touched.items()))
        self.db.execute("COMMIT")
        self.unindexed.clear()
        self.touched.clear()


def main():
    layout = sys.argv[1]
    messages = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    flush_every = int(os.environ.get("FLUSH_EVERY", "1"))
    replay = Replay(layout)
    rnd = random.Random(1)
    started = time.process_time()
    for commit in range(messages // BATCH):
        replay.db.execute("BEGIN IMMEDIATE")
        for _ in range(BATCH):
            sender = rnd.randrange(1000)
            peer = (sender + 1 + rnd.randrange(999)) % 1000
            replay.append(sender, peer, commit)
        replay.db.execute("COMMIT")
        if commit % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            if layout == "lsm" and (commit // CHECKPOINT_EVERY) % flush_every == flush_every - 1:
                replay.flush_index()
            replay.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    cpu = time.process_time() - started
    with open(f"/proc/{os.getpid()}/io") as io:
        written = next(int(line.split()[1]) for line in io if line.startswith("write_bytes"))
    print(f"{layout}: {messages} messages, {cpu / messages * 1e6:.1f} us CPU and "
          f"{written / messages:.0f} B written per message")


if __name__ == "__main__":
    main()
