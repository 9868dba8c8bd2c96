//! A manifest's `[messages]` and `[[schedules]]`: the topics a consumer
//! subscribes to, how its deliveries are retried, and its cron schedules.

use serde::Deserialize;

use crate::config::names::{EVENT_KINDS, event_topic, is_valid_name, is_valid_topic};

/// `[messages]`: the topics a consumer subscribes to and how its deliveries are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesManifest {
    /// Topics of its tenant; `documents.<collection>.*` stands for the
    /// created, updated and deleted events of a collection.
    pub topics: Vec<String>,
    /// Deliveries before a message goes to the dead letters.
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; doubles with each attempt, with jitter.
    pub backoff_ms: Option<u64>,
    /// Longest delay between two attempts.
    pub max_backoff_ms: Option<u64>,
    /// Most of this function's messages handled at once.
    pub concurrency: Option<usize>,
}

/// What a schedule does about ticks that passed while no host was running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missed {
    /// Fire one catch-up tick for all the missed ones.
    #[default]
    Once,
    /// Drop them; fire at the next tick on time.
    Skip,
}

/// `[[schedules]]`: ticks delivered to the function's message handler.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleManifest {
    /// Unique within the function; the tick's topic is `schedule.<name>`.
    pub name: String,
    /// `sec min hour day-of-month month day-of-week [year]`.
    pub cron: String,
    /// An IANA time zone name; UTC by default.
    pub timezone: Option<String>,
    /// What happens to ticks missed while down.
    #[serde(default)]
    pub missed: Missed,
}

/// A schedule with its expression and time zone parsed.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// As written.
    pub manifest: ScheduleManifest,
    /// The parsed expression.
    pub cron: cron::Schedule,
    /// The parsed time zone.
    pub timezone: chrono_tz::Tz,
}

/// Checks `[messages]` and expands its topics.
pub(super) fn check(mut messages: MessagesManifest) -> Result<MessagesManifest, String> {
    messages.topics = expand_topics(&messages.topics)?;
    if messages.max_attempts == Some(0) || messages.concurrency == Some(0) {
        return Err("[messages] max_attempts and concurrency must be at least 1".into());
    }
    Ok(messages)
}

/// Parses every `[[schedules]]`; names are unique within the function.
pub(super) fn parse_schedules(written: Vec<ScheduleManifest>) -> Result<Vec<Schedule>, String> {
    let mut schedules: Vec<Schedule> = Vec::with_capacity(written.len());
    for schedule in written {
        if schedules.iter().any(|s| s.manifest.name == schedule.name) {
            return Err(format!("schedule {:?} appears twice", schedule.name));
        }
        schedules.push(parse_schedule(schedule)?);
    }
    Ok(schedules)
}

/// Checks the subscribed topics and expands `documents.<collection>.*`.
fn expand_topics(topics: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for topic in topics {
        if let Some(rest) = topic.strip_prefix("documents.") {
            let (collection, kind) = rest.rsplit_once('.').unwrap_or((rest, ""));
            if collection.is_empty() || !is_valid_topic(collection) {
                return Err(format!(
                    "topic {topic:?}: expected documents.<collection>.<created|updated|deleted|*>"
                ));
            }
            match kind {
                "*" => out.extend(EVENT_KINDS.iter().map(|k| event_topic(collection, k))),
                k if EVENT_KINDS.contains(&k) => out.push(topic.clone()),
                _ => {
                    return Err(format!(
                        "topic {topic:?}: expected documents.<collection>.<created|updated|deleted|*>"
                    ));
                }
            }
        } else if topic.starts_with("schedule.") {
            return Err(format!(
                "topic {topic:?}: schedule ticks reach their own function; use [[schedules]]"
            ));
        } else if !is_valid_topic(topic) {
            return Err(format!(
                "topic {topic:?} must be 1-128 characters of A-Z, a-z, 0-9, _, . and -"
            ));
        } else {
            out.push(topic.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Parses a schedule's expression and time zone.
fn parse_schedule(manifest: ScheduleManifest) -> Result<Schedule, String> {
    if !is_valid_name(&manifest.name) {
        return Err(format!(
            "schedule name {:?} must be 1-63 characters of a-z, 0-9 and -",
            manifest.name
        ));
    }
    let cron = manifest.cron.parse::<cron::Schedule>().map_err(|e| {
        format!(
            "schedule {:?}: cron {:?} is invalid ({e}); expected sec min hour day-of-month month day-of-week [year]",
            manifest.name, manifest.cron
        )
    })?;
    let timezone = match &manifest.timezone {
        None => chrono_tz::Tz::UTC,
        Some(name) => name
            .parse()
            .map_err(|_| format!("schedule {:?}: unknown time zone {name:?}", manifest.name))?,
    };
    Ok(Schedule {
        manifest,
        cron,
        timezone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_wildcards_expand_and_schedule_topics_are_refused() {
        let topics = expand_topics(&["jobs".into(), "documents.posts.*".into()]).expect("expand");
        assert_eq!(
            topics,
            [
                "documents.posts.created",
                "documents.posts.deleted",
                "documents.posts.updated",
                "jobs"
            ]
        );
        assert!(expand_topics(&["documents.posts.renamed".into()]).is_err());
        assert!(expand_topics(&["schedule.x".into()]).is_err());
        assert!(expand_topics(&["a/b".into()]).is_err());
    }

    #[test]
    fn schedules_parse_with_seconds_and_time_zone() {
        let s = parse_schedule(ScheduleManifest {
            name: "digest".into(),
            cron: "0 30 8 * * *".into(),
            timezone: Some("Europe/Paris".into()),
            missed: Missed::Once,
        })
        .expect("parse");
        assert_eq!(s.timezone, chrono_tz::Europe::Paris);
        let bad = |cron: &str, tz: Option<&str>| {
            parse_schedule(ScheduleManifest {
                name: "x".into(),
                cron: cron.into(),
                timezone: tz.map(Into::into),
                missed: Missed::Skip,
            })
            .is_err()
        };
        assert!(bad("every day", None));
        assert!(bad("* * * * * *", Some("Mars/Olympus")));
    }
}
