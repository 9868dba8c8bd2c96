//! Committed document reads for the `documents` capability.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::OptionalExtension;
use sqlx::AnyPool;
use sqlx::Row;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{Backend, HotReads, Store, StoreError, select_documents};

/// A document row as committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDocument {
    /// The key.
    pub key: String,
    /// The JSON text, `None` for a deleted document.
    pub value: Option<String>,
    /// The committed version.
    pub version: u64,
}

fn version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Most point reads answered by one statement.
const MAX_READ_BATCH: usize = 256;

/// A document's address across tenants: (tenant, collection, key).
type FullKey = (String, String, String);

struct PointRead {
    key: FullKey,
    reply: oneshot::Sender<Result<Option<StoredDocument>, String>>,
}

/// Groups concurrent point reads into one statement on sqlx's pool
/// (PostgreSQL), so under load a round trip is paid per batch, not per read.
#[derive(Clone)]
pub(super) struct PointReads {
    jobs: mpsc::Sender<PointRead>,
}

/// The pool a lane reads on, and its database.
#[derive(Clone)]
struct Lane {
    pool: AnyPool,
    backend: Backend,
}

impl PointReads {
    /// Starts `lanes` tasks, each running one batch at a time on `pool`.
    pub(super) fn start(pool: AnyPool, backend: Backend, lanes: u32) -> Self {
        let (jobs, rx) = mpsc::channel(MAX_READ_BATCH * 4);
        let rx = Arc::new(Mutex::new(rx));
        let on = Lane { pool, backend };
        for _ in 0..lanes.max(1) {
            tokio::spawn(lane(on.clone(), rx.clone()));
        }
        Self { jobs }
    }
}

async fn lane(on: Lane, rx: Arc<Mutex<mpsc::Receiver<PointRead>>>) {
    let mut batch = Vec::with_capacity(MAX_READ_BATCH);
    loop {
        {
            let mut rx = rx.lock().await;
            if rx.recv_many(&mut batch, MAX_READ_BATCH).await == 0 {
                return;
            }
        }
        answer(&on, &mut batch).await;
    }
}

async fn answer(on: &Lane, batch: &mut Vec<PointRead>) {
    let mut keys: Vec<&FullKey> = batch.iter().map(|r| &r.key).collect();
    keys.sort();
    keys.dedup();
    let mut q = select_documents(
        "tenant, collection, key, value, version",
        keys.into_iter()
            .map(|(t, c, k)| (t.as_str(), c.as_str(), k.as_str())),
    );
    let rows = match super::build(&mut q, on.backend) {
        Ok(query) => query.fetch_all(&on.pool).await,
        Err(e) => Err(e),
    };
    match rows {
        Ok(rows) => {
            let found: HashMap<FullKey, StoredDocument> = rows
                .into_iter()
                .map(|row| {
                    let key: String = row.get(2);
                    let doc = StoredDocument {
                        key: key.clone(),
                        value: row.get(3),
                        version: version(row.get(4)),
                    };
                    ((row.get(0), row.get(1), key), doc)
                })
                .collect();
            for read in batch.drain(..) {
                let doc = found.get(&read.key).cloned();
                let _ = read.reply.send(Ok(doc));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for read in batch.drain(..) {
                let _ = read.reply.send(Err(message.clone()));
            }
        }
    }
}

impl Store {
    /// The document row at `key`, tombstones included.
    pub async fn get_document(
        &self,
        tenant: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let point_reads = match &self.hot {
            HotReads::Lite(lite) => {
                return lite.with(|conn| {
                    conn.prepare_cached(
                        "SELECT value, version FROM documents \
                         WHERE tenant = ?1 AND collection = ?2 AND key = ?3",
                    )?
                    .query_row([tenant, collection, key], |row| {
                        Ok(StoredDocument {
                            key: key.to_owned(),
                            value: row.get(0)?,
                            version: version(row.get(1)?),
                        })
                    })
                    .optional()
                });
            }
            HotReads::Pool(point_reads) => point_reads,
        };
        let (reply, rx) = oneshot::channel();
        let read = PointRead {
            key: (tenant.to_owned(), collection.to_owned(), key.to_owned()),
            reply,
        };
        point_reads
            .jobs
            .send(read)
            .await
            .map_err(|_| StoreError::Read("the reader has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Read("the reader has stopped".into()))?
            .map_err(StoreError::Read)
    }

    /// Up to `limit` live documents with keys starting with `prefix`, after `after`, in key order.
    pub async fn list_documents(
        &self,
        tenant: &str,
        collection: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredDocument>, StoreError> {
        let after = after.unwrap_or("");
        let documents: Vec<StoredDocument> = match &self.hot {
            HotReads::Lite(lite) => lite.with(|conn| {
                conn.prepare_cached(LIST_DOCUMENTS)?
                    .query_map(
                        rusqlite::params![tenant, collection, prefix, after, i64::from(limit)],
                        |row| {
                            Ok(StoredDocument {
                                key: row.get(0)?,
                                value: row.get(1)?,
                                version: version(row.get(2)?),
                            })
                        },
                    )?
                    .collect()
            })?,
            HotReads::Pool(_) => sqlx::query(LIST_DOCUMENTS)
                .bind(tenant)
                .bind(collection)
                .bind(prefix)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.reads)
                .await?
                .into_iter()
                .map(|row| StoredDocument {
                    key: row.get(0),
                    value: row.get(1),
                    version: version(row.get(2)),
                })
                .collect(),
        };
        Ok(documents
            .into_iter()
            .take_while(|d| d.key.starts_with(prefix))
            .collect())
    }
}

/// Live documents of a collection from a key on, in key order. Keys
/// compare bytewise in both databases and in Rust, so the keys with a given
/// prefix are one contiguous run starting at the prefix.
const LIST_DOCUMENTS: &str = "SELECT key, value, version FROM documents \
     WHERE tenant = $1 AND collection = $2 AND key >= $3 AND key > $4 AND value IS NOT NULL \
     ORDER BY key LIMIT $5";
