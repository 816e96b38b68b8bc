-- Migration 4: the read positions of a one-to-one conversation move into its row, so that an append
-- touches that row and the message's page, not a `readpos` row as well (docs/BENCHMARKS.md, "The
-- conversation row holds its read positions"). `lo` and `hi` are the two users (Conv::key is
-- lo * 2^31 + hi, so the key's range finds lo's conversations and `ix_conversation_hi` finds hi's); both
-- are NULL for a group, whose read positions stay in `readpos`. A conversation's row also says that both
-- users take part in it, so `readpos` no longer lists one-to-one participants and loses its `peer`
-- column. Applied statement by
-- statement with recorded progress (src/store/mysql.rs); the UPDATE may run twice and means the same.
ALTER TABLE conversation
    ADD COLUMN lo INT NULL,
    ADD COLUMN hi INT NULL,
    ADD COLUMN lo_read BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN hi_read BIGINT NOT NULL DEFAULT 0,
    ADD KEY ix_conversation_hi (hi);
UPDATE conversation c
    LEFT JOIN readpos l ON l.conv = c.id AND l.userid = c.id DIV 2147483648
    LEFT JOIN readpos h ON h.conv = c.id AND h.userid = c.id MOD 2147483648
    SET c.lo = c.id DIV 2147483648, c.hi = c.id MOD 2147483648,
        c.lo_read = COALESCE(l.pos, 0), c.hi_read = COALESCE(h.pos, 0)
    WHERE c.id > 0;
DELETE FROM readpos WHERE conv > 0;
ALTER TABLE readpos DROP COLUMN peer;
