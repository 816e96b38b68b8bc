-- Migration 4: the read positions of a one-to-one conversation move into its row, so that an append
-- touches that row and the message's leaf, not a third page of `readpos` at a random place as well
-- (docs/BENCHMARKS.md, "The conversation row holds its read positions"). `lo` and `hi` are the two users
-- (Conv::key is lo * 2^31 + hi, so the key's range finds lo's conversations and `ix_conversation_hi`
-- finds hi's); both are NULL for a group, whose read positions stay in `readpos`. A conversation's row
-- also says that both users take part in it, so `readpos` no longer lists one-to-one participants and
-- loses its `peer` column.
ALTER TABLE conversation ADD COLUMN lo INTEGER;
ALTER TABLE conversation ADD COLUMN hi INTEGER;
ALTER TABLE conversation ADD COLUMN lo_read INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation ADD COLUMN hi_read INTEGER NOT NULL DEFAULT 0;
UPDATE conversation SET
    lo = id / 2147483648,
    hi = id % 2147483648,
    lo_read = COALESCE((SELECT r.pos FROM readpos r
                        WHERE r.conv = conversation.id AND r.userid = conversation.id / 2147483648), 0),
    hi_read = COALESCE((SELECT r.pos FROM readpos r
                        WHERE r.conv = conversation.id AND r.userid = conversation.id % 2147483648), 0)
WHERE id > 0;
DELETE FROM readpos WHERE conv > 0;
ALTER TABLE readpos DROP COLUMN peer;
CREATE INDEX ix_conversation_hi ON conversation (hi);
