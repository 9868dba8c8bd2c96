//! `sluice:function/documents`: committed reads merged with this invocation's
//! staged writes; writes only staged.

use std::collections::BTreeMap;

use super::super::bindings::sluice::function::documents::{Document, Error, Host, Page};
use crate::config::names::{is_valid_collection, is_valid_key};
use crate::runtime::state::Capabilities;
use crate::store::staging::{DocKey, StagedWrite};

/// Most documents one `list` call returns.
const MAX_PAGE: u32 = 1_000;

fn check_collection(collection: &str) -> Result<(), Error> {
    if is_valid_collection(collection) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "collection {collection:?} must be 1-128 characters of A-Z, a-z, 0-9, _, . and -"
        )))
    }
}

fn doc_key(collection: String, key: String) -> Result<DocKey, Error> {
    check_collection(&collection)?;
    if !is_valid_key(&key) {
        return Err(Error::Invalid(
            "key must be 1-512 bytes without control characters".to_owned(),
        ));
    }
    Ok(DocKey { collection, key })
}

fn unavailable() -> Error {
    Error::Unavailable("the document store could not be read".to_owned())
}

impl Capabilities {
    /// Refuses at once once a read of this invocation found the store
    /// down: the function learns it without waiting again.
    fn store_up(&self) -> Result<(), Error> {
        if self.store_down {
            Err(unavailable())
        } else {
            Ok(())
        }
    }

    /// Notes a failed read, so that the invocation answers 503 if the
    /// function fails because of it.
    fn store_failed(&mut self, e: impl std::fmt::Display) -> Error {
        tracing::error!(error = %e, "document read failed");
        self.store_down = true;
        unavailable()
    }
}

impl Host for Capabilities {
    async fn get(&mut self, collection: String, key: String) -> Result<Option<Document>, Error> {
        let key = doc_key(collection, key)?;
        if let Some((write, version)) = self.staging.staged(&key) {
            return Ok(match write {
                StagedWrite::Put(value) => Some(Document {
                    key: key.key,
                    value: value.clone(),
                    version,
                }),
                StagedWrite::Delete => None,
            });
        }
        self.store_up()?;
        let stored = self
            .store
            .get_document(&self.tenant, &key.collection, &key.key)
            .await
            .map_err(|e| self.store_failed(e))?;
        let version = stored.as_ref().map_or(0, |d| d.version);
        self.staging.record_read(key.clone(), version);
        Ok(stored.and_then(|d| {
            d.value.map(|value| Document {
                key: key.key,
                value,
                version,
            })
        }))
    }

    fn put(
        &mut self,
        collection: String,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let staged = self.stage_put(collection, key, value);
        self.stop_at_limit(staged)
    }

    async fn delete(
        &mut self,
        collection: String,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let staged = self.stage_delete(collection, key).await;
        self.stop_at_limit(staged)
    }

    async fn list(
        &mut self,
        collection: String,
        prefix: String,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<Page, Error> {
        check_collection(&collection)?;
        if prefix.len() > 512 || cursor.as_ref().is_some_and(|c| c.len() > 512) {
            return Err(Error::Invalid(
                "prefix and cursor are at most 512 bytes".to_owned(),
            ));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let after = cursor.as_deref();
        let staged: Vec<_> = self
            .staging
            .staged_in_range(&collection, &prefix, after)
            .map(|(k, w)| (k.clone(), w.clone()))
            .collect();
        let staged_deletes = staged
            .iter()
            .filter(|(_, w)| *w == StagedWrite::Delete)
            .count();
        // Fetch enough that staged deletes cannot leave the page short, and
        // one more to know whether another page follows.
        let fetch = limit.saturating_add(u32::try_from(staged_deletes).unwrap_or(u32::MAX)) + 1;
        self.store_up()?;
        let rows = self
            .store
            .list_documents(&self.tenant, &collection, &prefix, after, fetch)
            .await
            .map_err(|e| self.store_failed(e))?;
        let db_has_more = rows.len() as u64 >= u64::from(fetch);
        // Staged keys past the last fetched row may sort after rows not yet
        // fetched, so they wait for a later page.
        let boundary = db_has_more
            .then(|| rows.last().map(|r| r.key.clone()))
            .flatten();

        let mut merged: BTreeMap<String, Option<(String, u64)>> = BTreeMap::new();
        for row in rows {
            let key = DocKey {
                collection: collection.clone(),
                key: row.key.clone(),
            };
            self.staging.record_read(key, row.version);
            merged.insert(row.key, row.value.map(|v| (v, row.version)));
        }
        for (key, write) in staged {
            if boundary.as_ref().is_some_and(|b| key.key > *b) {
                continue;
            }
            let version = self.staging.staged(&key).map_or(0, |(_, v)| v);
            merged.insert(
                key.key,
                match write {
                    StagedWrite::Put(v) => Some((v, version)),
                    StagedWrite::Delete => None,
                },
            );
        }
        let mut live = merged.into_iter().filter_map(|(key, doc)| {
            doc.map(|(value, version)| Document {
                key,
                value,
                version,
            })
        });
        let documents: Vec<Document> = live.by_ref().take(limit as usize).collect();
        let more = live.next().is_some() || db_has_more;
        let next_cursor = if more {
            documents.last().map(|d| d.key.clone())
        } else {
            None
        };
        Ok(Page {
            documents,
            next_cursor,
        })
    }
}

impl Capabilities {
    fn stage_put(&mut self, collection: String, key: String, value: String) -> Result<(), Error> {
        let key = doc_key(collection, key)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(&value).is_err() {
            return Err(Error::Invalid(format!(
                "value for {:?} is not JSON",
                key.key
            )));
        }
        self.staging
            .write(key, StagedWrite::Put(value))
            .map_err(|e| Error::LimitExceeded(e.to_string()))
    }

    async fn stage_delete(&mut self, collection: String, key: String) -> Result<bool, Error> {
        let key = doc_key(collection, key)?;
        let existed = match self.staging.staged(&key) {
            Some((write, _)) => matches!(write, StagedWrite::Put(_)),
            None => {
                // Reading first makes the delete depend on what it saw: a
                // concurrent write to the same document is a conflict.
                self.store_up()?;
                let stored = self
                    .store
                    .get_document(&self.tenant, &key.collection, &key.key)
                    .await
                    .map_err(|e| self.store_failed(e))?;
                self.staging
                    .record_read(key.clone(), stored.as_ref().map_or(0, |d| d.version));
                stored.is_some_and(|d| d.value.is_some())
            }
        };
        // Deleting what is not there changes nothing; the read recorded
        // above still makes the commit check that it stayed absent.
        if existed {
            self.staging
                .write(key, StagedWrite::Delete)
                .map_err(|e| Error::LimitExceeded(e.to_string()))?;
        }
        Ok(existed)
    }
}
