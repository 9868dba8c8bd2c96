//! The staging area: what one invocation read and wants to write.
//!
//! The process stage fills it through the `documents`, `blobs` and `queue`
//! imports; the persist stage commits it in one transaction, or drops it
//! (and with it every staged blob file).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::files::StagedFile;
use crate::config::limits::{Exceeded, Limit, Limits};

/// A document's address inside one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    /// The collection name.
    pub collection: String,
    /// The key inside the collection.
    pub key: String,
}

/// A staged change to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagedWrite {
    /// Create or replace with this JSON text.
    Put(String),
    /// Remove.
    Delete,
}

/// A staged change to one blob.
#[derive(Debug, Clone)]
pub enum StagedBlob {
    /// Create or replace with this staged file.
    Put(Arc<StagedFile>),
    /// Remove.
    Delete,
}

/// A staged queue message.
#[derive(Debug, Clone)]
pub struct StagedMessage {
    /// The topic, inside the tenant.
    pub topic: String,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// Milliseconds after commit before it may be delivered.
    pub delay_ms: u64,
    /// Dedupes sends to the same topic.
    pub idempotency_key: Option<String>,
}

/// A staging area's parts, as the commit reads them.
pub struct Parts<'a> {
    /// The version each document read had (0: absent).
    pub reads: &'a HashMap<DocKey, u64>,
    /// Document writes.
    pub writes: &'a BTreeMap<DocKey, StagedWrite>,
    /// Queue sends.
    pub messages: &'a [StagedMessage],
    /// Blob changes by name.
    pub blobs: &'a BTreeMap<String, StagedBlob>,
}

/// What one invocation read and staged.
#[derive(Debug, Default)]
pub struct Staging {
    reads: HashMap<DocKey, u64>,
    writes: BTreeMap<DocKey, StagedWrite>,
    messages: Vec<StagedMessage>,
    blobs: BTreeMap<String, StagedBlob>,
    staged_bytes: usize,
    blob_bytes: u64,
    upload: Option<Arc<StagedFile>>,
    limits: Limits,
    exceeded: Option<Exceeded>,
}

impl Staging {
    /// An empty staging area with these limits.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Remembers the version a read observed (0: absent). The first read of a
    /// key is the one checked at commit.
    pub fn record_read(&mut self, key: DocKey, version: u64) {
        self.reads.entry(key).or_insert(version);
    }

    /// The staged change to `key`, if any, with the version it will commit as
    /// (0 when the key was written without being read first).
    pub fn staged(&self, key: &DocKey) -> Option<(&StagedWrite, u64)> {
        self.writes
            .get(key)
            .map(|w| (w, self.reads.get(key).map_or(0, |v| v + 1)))
    }

    /// Staged changes in `collection` with keys starting with `prefix`, after `after`.
    pub fn staged_in_range<'a>(
        &'a self,
        collection: &'a str,
        prefix: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a DocKey, &'a StagedWrite)> + 'a {
        self.writes.iter().filter(move |(k, _)| {
            k.collection == collection
                && k.key.starts_with(prefix)
                && after.is_none_or(|a| k.key.as_str() > a)
        })
    }

    /// Stages a write of the host's own (an idempotent request's stored
    /// answer), outside the function's limits.
    pub fn host_write(&mut self, key: DocKey, write: StagedWrite) {
        self.writes.insert(key, write);
    }

    /// Stages a write.
    pub fn write(&mut self, key: DocKey, write: StagedWrite) -> Result<(), Exceeded> {
        let size = match &write {
            StagedWrite::Put(v) => v.len(),
            StagedWrite::Delete => 0,
        };
        let (max_size, max_writes) = (self.limits.document_bytes, self.limits.writes);
        if size > max_size {
            return self.exceed(Exceeded::new(
                Limit::Document,
                max_size,
                format!("a document of {size} bytes is larger than {max_size} bytes"),
            ));
        }
        if !self.writes.contains_key(&key) && self.writes.len() >= max_writes {
            return self.exceed(Exceeded::new(
                Limit::Writes,
                max_writes,
                format!("more than {max_writes} documents written in one invocation"),
            ));
        }
        self.charge(size + key.key.len())?;
        self.writes.insert(key, write);
        Ok(())
    }

    /// Stages a blob write. `put_bytes` are the bytes the function wrote
    /// for it (0 for an upload it keeps, which its route bounds).
    pub fn write_blob(
        &mut self,
        name: String,
        blob: StagedBlob,
        put_bytes: u64,
    ) -> Result<(), Exceeded> {
        let max_writes = self.limits.writes;
        if !self.blobs.contains_key(&name) && self.writes.len() + self.blobs.len() >= max_writes {
            return self.exceed(Exceeded::new(
                Limit::Writes,
                max_writes,
                format!("more than {max_writes} documents and blobs written in one invocation"),
            ));
        }
        let max = self.limits.blob_bytes;
        if self.blob_bytes.saturating_add(put_bytes) > max {
            return self.exceed(Exceeded::new(
                Limit::BlobBytes,
                max,
                format!("more than {max} bytes of blobs put in one invocation"),
            ));
        }
        self.blob_bytes += put_bytes;
        self.blobs.insert(name, blob);
        Ok(())
    }

    /// The staged change to blob `name`, if any.
    pub fn staged_blob(&self, name: &str) -> Option<&StagedBlob> {
        self.blobs.get(name)
    }

    /// Staged blob changes with names starting with `prefix`, after `after`.
    pub fn staged_blobs_in_range<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a StagedBlob)> + 'a {
        self.blobs
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .filter(move |(name, _)| after.is_none_or(|a| name.as_str() > a))
    }

    /// Gives the invocation the request's upload.
    pub fn set_upload(&mut self, upload: Option<Arc<StagedFile>>) {
        self.upload = upload;
    }

    /// The request's upload, and the name it is kept under, if it is.
    pub fn upload(&self) -> Option<(&Arc<StagedFile>, Option<&str>)> {
        let upload = self.upload.as_ref()?;
        let kept = self.blobs.iter().find_map(|(name, blob)| match blob {
            StagedBlob::Put(file) if Arc::ptr_eq(file, upload) => Some(name.as_str()),
            _ => None,
        });
        Some((upload, kept))
    }

    /// Stages a queue message.
    pub fn send(&mut self, message: StagedMessage) -> Result<(), Exceeded> {
        let size = message.payload.len();
        let (max_size, max_messages) = (self.limits.payload_bytes, self.limits.messages);
        if size > max_size {
            return self.exceed(Exceeded::new(
                Limit::Payload,
                max_size,
                format!("a payload of {size} bytes is larger than {max_size} bytes"),
            ));
        }
        if self.messages.len() >= max_messages {
            return self.exceed(Exceeded::new(
                Limit::Messages,
                max_messages,
                format!("more than {max_messages} messages sent in one invocation"),
            ));
        }
        self.charge(size)?;
        self.messages.push(message);
        Ok(())
    }

    /// The first limit this invocation went over. Once set, the invocation
    /// fails whatever the function answers: a limit is not a soft error.
    pub fn exceeded(&self) -> Option<&Exceeded> {
        self.exceeded.as_ref()
    }

    fn charge(&mut self, bytes: usize) -> Result<(), Exceeded> {
        let max = self.limits.staged_bytes;
        if self.staged_bytes + bytes > max {
            return self.exceed(Exceeded::new(
                Limit::StagedBytes,
                max,
                format!("more than {max} bytes staged in one invocation"),
            ));
        }
        self.staged_bytes += bytes;
        Ok(())
    }

    fn exceed(&mut self, exceeded: Exceeded) -> Result<(), Exceeded> {
        self.exceeded.get_or_insert_with(|| exceeded.clone());
        Err(exceeded)
    }

    /// True when there is nothing to commit but the invocation record.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.messages.is_empty() && self.blobs.is_empty()
    }

    /// A document it read, or else one it wrote: what a conflict names.
    pub fn some_key(&self) -> Option<DocKey> {
        (self.reads.keys().next())
            .or_else(|| self.writes.keys().next())
            .cloned()
    }

    /// The staged blob files, to sync before the commit.
    pub fn blob_files(&self) -> impl Iterator<Item = &Arc<StagedFile>> {
        self.blobs.values().filter_map(|b| match b {
            StagedBlob::Put(file) => Some(file),
            StagedBlob::Delete => None,
        })
    }

    /// The versions read, the writes, the messages and the blob changes.
    pub fn parts(&self) -> Parts<'_> {
        Parts {
            reads: &self.reads,
            writes: &self.writes,
            messages: &self.messages,
            blobs: &self.blobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> DocKey {
        DocKey {
            collection: "c".into(),
            key: k.into(),
        }
    }

    #[test]
    fn first_read_wins_and_predicts_the_version() {
        let mut s = Staging::default();
        s.record_read(key("a"), 3);
        s.record_read(key("a"), 7);
        s.write(key("a"), StagedWrite::Put("1".into()))
            .expect("write");
        assert_eq!(s.staged(&key("a")).map(|(_, v)| v), Some(4));
        s.write(key("b"), StagedWrite::Put("1".into()))
            .expect("write");
        assert_eq!(s.staged(&key("b")).map(|(_, v)| v), Some(0));
    }

    #[test]
    fn limits_are_enforced() {
        let mut s = Staging::new(Limits {
            writes: 1,
            document_bytes: 4,
            ..Limits::default()
        });
        assert!(s.write(key("a"), StagedWrite::Put("12345".into())).is_err());
        s.write(key("a"), StagedWrite::Put("1".into()))
            .expect("first");
        s.write(key("a"), StagedWrite::Put("2".into()))
            .expect("same key again");
        assert!(s.write(key("b"), StagedWrite::Put("1".into())).is_err());
        let first = s.exceeded().map(|e| e.limit);
        assert_eq!(first, Some(Limit::Document), "the first breach is kept");
    }

    #[test]
    fn range_filters_by_collection_prefix_and_cursor() {
        let mut s = Staging::default();
        for k in ["u/1", "u/2", "v/1"] {
            s.write(key(k), StagedWrite::Delete).expect("write");
        }
        let keys: Vec<_> = s
            .staged_in_range("c", "u/", Some("u/1"))
            .map(|(k, _)| k.key.clone())
            .collect();
        assert_eq!(keys, vec!["u/2"]);
    }
}
