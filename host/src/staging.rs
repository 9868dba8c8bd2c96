//! The staging area: what one invocation read and wants to write.
//!
//! The process stage fills it through the `documents` and `queue` imports;
//! the persist stage commits it in one transaction, or drops it.

use std::collections::{BTreeMap, HashMap};

use crate::limits::{Exceeded, Limit};

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

/// Per-invocation caps on what may be staged.
#[derive(Debug, Clone, Copy)]
pub struct StagingLimits {
    /// Largest document, in bytes of JSON text.
    pub max_document_bytes: usize,
    /// Most distinct documents written.
    pub max_writes: usize,
    /// Most bytes of documents and payloads staged in total.
    pub max_staged_bytes: usize,
    /// Most queue messages.
    pub max_messages: usize,
    /// Largest message payload.
    pub max_payload_bytes: usize,
}

impl Default for StagingLimits {
    fn default() -> Self {
        Self {
            max_document_bytes: 1024 * 1024,
            max_writes: 10_000,
            max_staged_bytes: 32 * 1024 * 1024,
            max_messages: 1_000,
            max_payload_bytes: 256 * 1024,
        }
    }
}

/// What one invocation read and staged.
#[derive(Debug, Default)]
pub struct Staging {
    reads: HashMap<DocKey, u64>,
    writes: BTreeMap<DocKey, StagedWrite>,
    messages: Vec<StagedMessage>,
    staged_bytes: usize,
    limits: StagingLimits,
    exceeded: Option<Exceeded>,
}

impl Staging {
    /// An empty staging area with these limits.
    pub fn new(limits: StagingLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
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

    /// Stages a write.
    pub fn write(&mut self, key: DocKey, write: StagedWrite) -> Result<(), Exceeded> {
        let size = match &write {
            StagedWrite::Put(v) => v.len(),
            StagedWrite::Delete => 0,
        };
        let limits = self.limits;
        if size > limits.max_document_bytes {
            return self.exceed(Exceeded::new(
                Limit::Document,
                limits.max_document_bytes,
                format!(
                    "a document of {size} bytes is larger than {} bytes",
                    limits.max_document_bytes
                ),
            ));
        }
        if !self.writes.contains_key(&key) && self.writes.len() >= limits.max_writes {
            return self.exceed(Exceeded::new(
                Limit::Writes,
                limits.max_writes,
                format!(
                    "more than {} documents written in one invocation",
                    limits.max_writes
                ),
            ));
        }
        self.charge(size + key.key.len())?;
        self.writes.insert(key, write);
        Ok(())
    }

    /// Stages a queue message.
    pub fn send(&mut self, message: StagedMessage) -> Result<(), Exceeded> {
        let limits = self.limits;
        let size = message.payload.len();
        if size > limits.max_payload_bytes {
            return self.exceed(Exceeded::new(
                Limit::Payload,
                limits.max_payload_bytes,
                format!(
                    "a payload of {size} bytes is larger than {} bytes",
                    limits.max_payload_bytes
                ),
            ));
        }
        if self.messages.len() >= limits.max_messages {
            return self.exceed(Exceeded::new(
                Limit::Messages,
                limits.max_messages,
                format!(
                    "more than {} messages sent in one invocation",
                    limits.max_messages
                ),
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
        let max = self.limits.max_staged_bytes;
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
        self.writes.is_empty() && self.messages.is_empty()
    }

    /// The versions read, the writes and the messages.
    pub fn into_parts(
        self,
    ) -> (
        HashMap<DocKey, u64>,
        BTreeMap<DocKey, StagedWrite>,
        Vec<StagedMessage>,
    ) {
        (self.reads, self.writes, self.messages)
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
        let mut s = Staging::new(StagingLimits {
            max_writes: 1,
            max_document_bytes: 4,
            ..StagingLimits::default()
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
