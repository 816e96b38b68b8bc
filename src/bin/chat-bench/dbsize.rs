//! The size of a node's SQLite database, read through a read-only connection of the tool's own: bytes
//! per stored message are the growth of `page_count × page_size` between two readings divided by the
//! messages stored in between. A read transaction sees the WAL's committed pages too, so no checkpoint is
//! needed; the free list is reported apart, and the `dbstat` table (where this SQLite has it) splits the
//! growth by table and index.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OpenFlags};

use crate::report::StorageReport;

/// One reading of the database's size.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DbSize {
    pub page_size: u64,
    pub page_count: u64,
    pub freelist_count: u64,
    /// Bytes of each table and index, when SQLite has the dbstat table.
    pub objects: BTreeMap<String, u64>,
}

impl DbSize {
    pub fn bytes(&self) -> u64 {
        self.page_count * self.page_size
    }

    pub fn used_bytes(&self) -> u64 {
        self.page_count.saturating_sub(self.freelist_count) * self.page_size
    }
}

/// Reads the size of the database at `path`, read-only (the node keeps writing meanwhile).
pub fn measure(path: &Path) -> anyhow::Result<DbSize> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("opening {} read-only", path.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let pragma = |name: &str| -> anyhow::Result<u64> {
        let v: i64 = conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .with_context(|| format!("PRAGMA {name} on {}", path.display()))?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    // One read transaction, so the counts and the per-object sizes describe the same moment.
    conn.execute_batch("BEGIN")?;
    let size = DbSize {
        page_size: pragma("page_size")?,
        page_count: pragma("page_count")?,
        freelist_count: pragma("freelist_count")?,
        objects: objects(&conn).unwrap_or_default(),
    };
    conn.execute_batch("COMMIT")?;
    Ok(size)
}

fn objects(conn: &Connection) -> rusqlite::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|r| r.map(|(name, bytes)| (name, u64::try_from(bytes).unwrap_or(0))))
        .collect()
}

/// Bytes per message between two readings.
pub fn report(path: &Path, before: &DbSize, after: &DbSize, messages: u64) -> StorageReport {
    let per = |grew: i128| {
        if messages == 0 {
            0.0
        } else {
            grew as f64 / messages as f64
        }
    };
    let grew = |a: u64, b: u64| i128::from(a) - i128::from(b);
    let per_object = after
        .objects
        .iter()
        .map(|(name, &bytes)| {
            let was = before.objects.get(name).copied().unwrap_or(0);
            (name.clone(), per(grew(bytes, was)))
        })
        .filter(|(_, b)| *b != 0.0)
        .collect();
    let mut wal = PathBuf::from(path).into_os_string();
    wal.push("-wal");
    StorageReport {
        path: path.display().to_string(),
        messages,
        page_size: after.page_size,
        bytes_before: before.bytes(),
        bytes_after: after.bytes(),
        bytes_per_msg: per(grew(after.bytes(), before.bytes())),
        used_bytes_per_msg: per(grew(after.used_bytes(), before.used_bytes())),
        wal_bytes_after: std::fs::metadata(PathBuf::from(wal)).ok().map(|m| m.len()),
        per_object,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_per_message_from_two_readings_of_a_live_wal_database() {
        let dir = std::env::temp_dir().join(format!("chat-bench-dbsize-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.db");
        let _ = std::fs::remove_file(&path);
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode=WAL; CREATE TABLE m (id INTEGER PRIMARY KEY, text TEXT NOT NULL);",
            )
            .unwrap();
        let before = measure(&path).unwrap();
        writer.execute_batch("BEGIN").unwrap();
        for i in 0..1_000 {
            writer
                .execute("INSERT INTO m (text) VALUES (?1)", [format!("{i:0>100}")])
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
        // Not checkpointed: the new pages are only in the WAL, and the reading still sees them.
        let after = measure(&path).unwrap();
        let r = report(&path, &before, &after, 1_000);
        assert!(r.bytes_after > r.bytes_before, "{r:?}");
        assert!(
            (100.0..200.0).contains(&r.bytes_per_msg),
            "a 100-byte row with its header: {r:?}"
        );
        assert!(r.wal_bytes_after.unwrap_or(0) > 0, "{r:?}");
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
