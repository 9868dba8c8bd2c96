//! What nodes sharing one database tell each other through it: the catalog
//! generation, change and delivery notices (PostgreSQL `NOTIFY`), and
//! cluster-wide locks on contended documents.

use sqlx::postgres::PgListener;
use sqlx::{Any, AnyConnection};

use super::{Backend, Store, StoreError};

/// The PostgreSQL channel that tells every node the catalog changed.
const CATALOG_CHANNEL: &str = "sluice_catalog";
/// The PostgreSQL channel that tells every node deliveries were added.
const DELIVERIES_CHANNEL: &str = "sluice_deliveries";

/// Marks, in `conn`'s transaction, that tenants or deployed functions
/// changed: other nodes reload them when it commits.
pub(super) async fn changed(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE catalog_changes SET generation = generation + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    notify(conn, CATALOG_CHANNEL).await
}

/// Tells other nodes that `conn`'s commit added deliveries.
pub(super) async fn deliveries_added(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    notify(conn, DELIVERIES_CHANNEL).await
}

/// On PostgreSQL, notifies `channel`: at commit, and only if it commits.
async fn notify(conn: &mut AnyConnection, channel: &str) -> Result<(), sqlx::Error> {
    if Backend::of_connection(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// What another node told this one.
pub enum Notice {
    /// Tenants or deployed functions changed.
    Catalog,
    /// Deliveries were added.
    Deliveries,
    /// The connection dropped: notices may have been missed.
    Lost,
}

/// A node's subscription to the other nodes' notices.
pub struct Notices(PgListener);

impl Notices {
    /// The next notice.
    pub async fn next(&mut self) -> Notice {
        match self.0.try_recv().await {
            Ok(Some(n)) if n.channel() == DELIVERIES_CHANNEL => Notice::Deliveries,
            Ok(Some(_)) => Notice::Catalog,
            Ok(None) | Err(_) => Notice::Lost,
        }
    }
}

/// First key of the advisory locks on documents (see [`Store::lock_document`]).
const DOCUMENT_LOCKS: i32 = 0x736c_7563;

/// A cluster-wide lock on one document; released when dropped.
pub struct DocumentLock {
    conn: Option<sqlx::pool::PoolConnection<Any>>,
    id: i32,
}

impl Drop for DocumentLock {
    fn drop(&mut self) {
        let (Some(mut conn), id) = (self.conn.take(), self.id) else {
            return;
        };
        // Unlocking needs the session that locked; should it fail, closing
        // the session releases every lock it holds.
        tokio::spawn(async move {
            let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(DOCUMENT_LOCKS)
                .bind(id)
                .execute(&mut *conn)
                .await;
            if unlocked.is_err() {
                let _ = conn.close().await;
            }
        });
    }
}

impl Store {
    /// Subscribes to other nodes' notices; `None` on SQLite, which no other
    /// node shares.
    pub async fn notices(&self) -> Result<Option<Notices>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = PgListener::connect(&self.url).await?;
        listener
            .listen_all([CATALOG_CHANNEL, DELIVERIES_CHANNEL])
            .await?;
        Ok(Some(Notices(listener)))
    }

    /// The catalog's generation: it moves whenever tenants or deployed
    /// functions change, on any node.
    pub async fn catalog_generation(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM catalog_changes WHERE id = 1")
                .fetch_one(&self.reads)
                .await?,
        )
    }

    /// On PostgreSQL, waits for the cluster-wide lock on document
    /// `collection/key` of `tenant`, held until the returned value is
    /// dropped; `None` on SQLite, where one host owns the database and its
    /// own lock suffices.
    pub async fn lock_document(
        &self,
        tenant: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<DocumentLock>, StoreError> {
        let Some(pool) = &self.locks else {
            return Ok(None);
        };
        // The commit's key for the document (a stable hash, the same on
        // every node); two documents sharing its top 32 bits merely take
        // turns too.
        let id = (super::locks::document_key(tenant, collection, key) >> 32) as i32;
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(DOCUMENT_LOCKS)
            .bind(id)
            .execute(&mut *conn)
            .await?;
        Ok(Some(DocumentLock {
            conn: Some(conn),
            id,
        }))
    }
}
