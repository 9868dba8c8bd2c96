//! Every naming rule, once: tenants, functions, schedules, topics,
//! collections, document and cache keys, blob names, configuration names,
//! and the topics the host sends document events and schedule ticks on.

/// The document event kinds; [`event_topic`] names their topics.
pub const EVENT_KINDS: [&str; 3] = ["created", "updated", "deleted"];

/// Longest blob name, in bytes.
pub const MAX_BLOB_NAME: usize = 1_024;

/// Longest document or cache key, in bytes.
pub const MAX_KEY: usize = 512;

/// True for tenant, function and schedule names: `[a-z0-9-]`, 1 to 63
/// long, not starting with `-` (they appear in paths and file names).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The collection of a tenant's stored answers to requests with an
/// `Idempotency-Key`: the host's own, which no function can name (`$` is
/// no collection name's).
pub const IDEMPOTENCY_COLLECTION: &str = "$idempotency";

/// Longest configuration value, in bytes.
pub const MAX_CONFIG_VALUE: usize = 65_536;

/// True for configuration names (`sluice:function/config`): `[A-Za-z0-9_.-]`,
/// 1 to 128 long, starting with a letter or `_`, like environment variables.
pub fn is_valid_config_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') && is_valid_topic(name)
}

/// True for topic names made of `[A-Za-z0-9_.-]`, 1 to 128 long.
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= 128
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Collections follow the topic rule: a collection's name is part of its
/// event topics.
pub fn is_valid_collection(collection: &str) -> bool {
    is_valid_topic(collection)
}

/// Document and cache keys: 1 to 512 bytes, no control characters.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY && !key.chars().any(char::is_control)
}

/// Blob names: 1 to 1,024 bytes, no control characters.
pub fn is_valid_blob_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_BLOB_NAME && !name.chars().any(char::is_control)
}

/// The topic of `kind` events of `collection`: `documents.<collection>.<kind>`.
pub fn event_topic(collection: &str, kind: &str) -> String {
    format!("documents.{collection}.{kind}")
}

/// The topic of schedule `name`'s ticks: `schedule.<name>`.
pub fn schedule_topic(name: &str) -> String {
    format!("schedule.{name}")
}

/// True for topics only the host may send to: document events and schedule ticks.
pub fn is_reserved_topic(topic: &str) -> bool {
    topic.starts_with("documents.") || topic.starts_with("schedule.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        assert!(is_valid_name("demo-1"));
        assert!(!is_valid_name("Demo"));
        assert!(!is_valid_name("-x"));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("a/b"));
        assert!(is_valid_config_name("STRIPE_KEY"));
        assert!(is_valid_config_name("_x.y-z"));
        assert!(!is_valid_config_name("1KEY"));
        assert!(!is_valid_config_name("A KEY"));
        assert!(!is_valid_config_name(""));
    }

    #[test]
    fn topics_keys_and_blob_names() {
        assert!(is_valid_topic("jobs.v1-x_y"));
        assert!(!is_valid_topic("a/b"));
        assert!(is_valid_key("alice/1"));
        assert!(!is_valid_key("a\nb"));
        assert!(!is_valid_key(&"k".repeat(MAX_KEY + 1)));
        assert!(is_valid_blob_name("photos/2026/cat.png"));
        assert!(!is_valid_blob_name(""));
        assert!(is_reserved_topic(&event_topic("notes", "created")));
        assert!(is_reserved_topic(&schedule_topic("daily")));
        assert!(!is_reserved_topic("notes"));
    }
}
