//! The hot reads on SQLite (documents, due deliveries), run on the calling
//! thread through read-only rusqlite connections.
//!
//! sqlx's SQLite driver runs every statement on a worker thread of its own;
//! the handoff there and back (a futex wake-up across the two vCPUs, tens
//! of microseconds) costs several times the indexed lookup it carries. In
//! WAL mode a reader never waits for the writer, so a point read or a short
//! range scan is quicker done where the caller already runs than handed to
//! another thread. Rare and admin reads stay on sqlx's pool.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// How long a read waits for a lock before it fails. In WAL mode readers
/// wait only while the database is being recovered or its WAL reset, which
/// is short; the bound keeps a worker thread from being held for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Read-only connections to one SQLite file, taken by whichever thread
/// reads and put back after.
pub(super) struct LiteReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Most connections kept open while idle.
    keep: usize,
}

impl LiteReads {
    /// Reads of the database file at `path`, keeping up to `keep`
    /// connections open. Opens one at once, so a bad path fails here.
    pub(super) fn open(path: &Path, keep: usize) -> Result<Self, StoreError> {
        let first = connect(path)?;
        Ok(Self {
            path: path.to_owned(),
            idle: Mutex::new(vec![first]),
            keep: keep.max(1),
        })
    }

    /// Runs `read` on an idle connection (a new one if none is idle).
    pub(super) fn with<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => connect(&self.path)?,
        };
        let result = read(&conn).map_err(|e| StoreError::Read(e.to_string()));
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.keep {
            idle.push(conn);
        }
        result
    }
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open = || -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.set_prepared_statement_cache_capacity(32);
        Ok(conn)
    };
    open().map_err(|e| StoreError::Open(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_what_another_connection_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let writer = Connection::open(&path).expect("open");
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
            .expect("schema");
        let reads = LiteReads::open(&path, 2).expect("reads");
        let count = |reads: &LiteReads| {
            reads
                .with(|c| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)))
                .expect("count")
        };
        assert_eq!(count(&reads), 0);
        writer
            .execute("INSERT INTO t VALUES (1)", [])
            .expect("insert");
        assert_eq!(count(&reads), 1);
        // A read-only connection refuses writes.
        assert!(reads.with(|c| c.execute("DELETE FROM t", [])).is_err());
    }
}
