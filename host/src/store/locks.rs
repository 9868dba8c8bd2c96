//! PostgreSQL advisory locks that keep writers on different nodes apart
//! only where they touch the same things.
//!
//! A committer's batch locks what it reads and writes, by a stable hash
//! (the same on every node and every build): each document and blob
//! (shared for a document it only reads, exclusive for one it writes) and
//! each tenant (shared, or exclusive for a tenant with a storage quota,
//! whose usage it checks). Every batch takes its locks in one statement and
//! in one global order, so two batches never wait for each other in a
//! circle. Admin writes take [`ADMIN_LOCK`] instead, and deleting a tenant
//! its exclusive tenant lock too. SQLite needs none of this: one writer
//! owns the file (`BEGIN IMMEDIATE`).

use std::hash::Hasher;

use sqlx::{Any, AnyConnection, Connection};

use super::Backend;

/// Key of the advisory lock that admin writes (deploys, tenants, keys)
/// take: they commit one at a time across the cluster ("sluice" in ASCII).
const ADMIN_LOCK: i64 = 0x736c_7569_6365;

/// Key of the lock every batch takes shared, and a batch too big to lock
/// key by key takes exclusive ("sluicf").
const COMMIT_LOCK: i64 = 0x736c_7569_6366;

/// Past this many document and blob keys a batch locks every committer out
/// instead: PostgreSQL's lock table is shared and bounded
/// (`max_locks_per_transaction` × connections).
const MAX_KEY_LOCKS: usize = 512;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Mode {
    /// Beside other shared holders.
    Shared,
    /// Alone.
    Exclusive,
}

impl Mode {
    /// Exclusive when `exclusive`, else shared.
    pub(super) fn exclusive_if(exclusive: bool) -> Self {
        if exclusive {
            Self::Exclusive
        } else {
            Self::Shared
        }
    }
}

/// Which locks a batch takes, in the order it takes them.
#[derive(Debug)]
pub(super) struct Plan {
    /// (key, mode), already in lock order.
    locks: Vec<(i64, Mode)>,
}

impl Plan {
    /// The locks for a batch touching `tenants` and `keys`, each hashed with
    /// [`tenant_key`], [`document_key`] or [`blob_key`]. A key listed twice
    /// is locked once, in the stronger mode.
    pub(super) fn new(tenants: Vec<(i64, Mode)>, keys: Vec<(i64, Mode)>) -> Self {
        let (tenants, keys) = (strongest(tenants), strongest(keys));
        let whole = keys.len() > MAX_KEY_LOCKS;
        let mut locks = Vec::with_capacity(1 + tenants.len() + keys.len());
        locks.push((COMMIT_LOCK, Mode::exclusive_if(whole)));
        locks.extend(tenants);
        if !whole {
            locks.extend(keys);
        }
        Self { locks }
    }

    /// Takes every lock, waiting for holders in the other mode; they are
    /// held until the transaction ends.
    pub(super) async fn take(&self, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
        // One round trip, no prepared statement to cache: the text holds
        // only integers we made. A VALUES list is scanned in order, so the
        // locks are taken in the plan's order.
        let mut sql = String::from(
            "SELECT CASE WHEN s THEN pg_advisory_xact_lock_shared(k) \
             ELSE pg_advisory_xact_lock(k) END FROM (VALUES ",
        );
        for (n, (key, mode)) in self.locks.iter().enumerate() {
            if n > 0 {
                sql.push_str(", ");
            }
            let shared = *mode == Mode::Shared;
            sql.push_str(&format!("({key}::bigint, {shared})"));
        }
        sql.push_str(") AS v(k, s)");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

/// Sorts `locks` by key and merges duplicates into their strongest mode.
fn strongest(mut locks: Vec<(i64, Mode)>) -> Vec<(i64, Mode)> {
    // Exclusive sorts after shared: the last of each key is its strongest.
    locks.sort_unstable();
    let mut merged: Vec<(i64, Mode)> = Vec::with_capacity(locks.len());
    for (key, mode) in locks {
        match merged.last_mut() {
            Some(last) if last.0 == key => last.1 = mode,
            _ => merged.push((key, mode)),
        }
    }
    merged
}

/// The lock of tenant `tenant`.
pub(super) fn tenant_key(tenant: &str) -> i64 {
    stable_hash(b't', &[tenant])
}

/// The lock of one document.
pub(super) fn document_key(tenant: &str, collection: &str, key: &str) -> i64 {
    stable_hash(b'd', &[tenant, collection, key])
}

/// The lock of one blob.
pub(super) fn blob_key(tenant: &str, name: &str) -> i64 {
    stable_hash(b'b', &[tenant, name])
}

/// FNV-1a over a kind byte and NUL-separated parts: fixed by its
/// definition, so nodes built by different compilers agree on every key.
fn stable_hash(kind: u8, parts: &[&str]) -> i64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(&[kind]);
    for part in parts {
        hasher.write(&[0]);
        hasher.write(part.as_bytes());
    }
    i64::from_ne_bytes(hasher.finish().to_ne_bytes())
}

/// Starts an admin write transaction: it holds the write lock at once.
///
/// On SQLite a deferred transaction that reads first fails without waiting
/// (`SQLITE_BUSY_SNAPSHOT`) when another connection commits before its first
/// write; `BEGIN IMMEDIATE` takes the lock up front. On PostgreSQL
/// [`ADMIN_LOCK`] does the same for admin writes across every node.
pub(super) async fn begin_admin(
    conn: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, Any>, sqlx::Error> {
    match Backend::of_connection(conn) {
        Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await,
        Backend::Postgres => {
            let mut tx = conn.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(ADMIN_LOCK)
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
    }
}

/// Waits, in an admin transaction on PostgreSQL, until no batch writes for
/// `tenant`, and keeps new ones out until the transaction ends.
pub(super) async fn exclude_tenant(
    conn: &mut AnyConnection,
    tenant: &str,
) -> Result<(), sqlx::Error> {
    if Backend::of_connection(conn) != Backend::Postgres {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(tenant_key(tenant))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether PostgreSQL gave up on a transaction it can run again as it was:
/// a deadlock it broke, or a serialization failure.
pub(super) fn retryable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("40P01" | "40001")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_by_definition() {
        // FNV-1a 64 of "a": a change here splits a cluster of mixed builds.
        assert_eq!(stable_hash(b'a', &[]) as u64, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn parts_are_separated() {
        assert_ne!(document_key("a", "bc", "d"), document_key("ab", "c", "d"));
        assert_ne!(document_key("t", "c", "k"), blob_key("t", "c\0k"));
    }

    #[test]
    fn a_plan_orders_merges_and_falls_back() {
        let plan = Plan::new(
            vec![
                (5, Mode::Shared),
                (3, Mode::Exclusive),
                (5, Mode::Exclusive),
            ],
            vec![(9, Mode::Shared), (1, Mode::Shared), (9, Mode::Exclusive)],
        );
        assert_eq!(
            plan.locks,
            vec![
                (COMMIT_LOCK, Mode::Shared),
                (3, Mode::Exclusive),
                (5, Mode::Exclusive),
                (1, Mode::Shared),
                (9, Mode::Exclusive),
            ]
        );
        let many = (0..=MAX_KEY_LOCKS as i64)
            .map(|k| (k, Mode::Exclusive))
            .collect();
        let plan = Plan::new(vec![(7, Mode::Shared)], many);
        assert_eq!(
            plan.locks,
            vec![(COMMIT_LOCK, Mode::Exclusive), (7, Mode::Shared)]
        );
    }
}
