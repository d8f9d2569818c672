//! Mirroring: the knowledge base itself is the sync state. With a Knowledge API key and a
//! knowledge base id, a crawl lists the knowledge base's documents, offers exactly the files
//! whose current blob is not there (indexed or indexing), and deletes documents of files the
//! branch no longer has and copies a newer indexed document replaces; a background watcher
//! finishes the deletions once the user's import is indexed.

pub mod api;
pub mod cleanup;
pub mod documents;
pub mod listing;
pub mod pipeline;
pub mod plan;
pub mod push;
pub mod record;
pub mod watcher;

use std::sync::Arc;
use std::time::Duration;

use api::{ApiError, KnowledgeApi};
use listing::{KbRecord, Listing};
use record::RecordMemory;

/// One knowledge base to mirror into, with what the process remembers of it.
#[derive(Clone)]
pub struct Mirror {
    pub api: KnowledgeApi,
    pub dataset: String,
    /// The plugin process's memory of earlier listings (none for the command line).
    pub memory: Option<Arc<RecordMemory>>,
}

/// How often the watcher polls, and how long it waits for the import to make progress.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub poll: Duration,
    pub max_wait: Duration,
}

impl WatchSettings {
    /// `GIT_DATASOURCE_MIRROR_POLL_SECS` (15) and `GIT_DATASOURCE_MIRROR_WAIT_SECS` (1800).
    pub fn from_env() -> Self {
        WatchSettings {
            poll: Duration::from_secs(env_number("GIT_DATASOURCE_MIRROR_POLL_SECS", 15))
                .max(Duration::from_secs(1)),
            max_wait: Duration::from_secs(env_number("GIT_DATASOURCE_MIRROR_WAIT_SECS", 30 * 60)),
        }
    }
}

impl watcher::WatcherLimits {
    /// `GIT_DATASOURCE_MIRROR_WATCHERS` (16 at once) and `GIT_DATASOURCE_MIRROR_WATCHERS_MB`
    /// (128 for all their watches); each watcher ends four waits after it starts.
    pub fn from_env() -> Self {
        watcher::WatcherLimits {
            count: env_number("GIT_DATASOURCE_MIRROR_WATCHERS", 16).max(1) as usize,
            bytes: (env_number("GIT_DATASOURCE_MIRROR_WATCHERS_MB", 128) as usize)
                .saturating_mul(1 << 20),
            deadline: WatchSettings::from_env().max_wait * 4,
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What mirroring saw and planned in one crawl, for the summary and the watcher.
#[derive(Debug, Clone, Default)]
pub struct MirrorOutcome {
    pub plan: plan::MirrorPlan,
    /// The `source_url` prefixes of this configuration's documents.
    pub prefixes: Vec<String>,
    /// The branch's files, and `(path, blob)` of what this run offered.
    pub files: Vec<git_remote::FileEntry>,
    pub offered: Vec<(String, git2::Oid)>,
    /// The knowledge base as listed, with the crawl's skips and settled commit (empty after
    /// an unchanged run, whose record went straight back to memory).
    pub record: KbRecord,
    pub requests: usize,
    pub listing_time: Duration,
    pub unchanged: bool,
    /// The deletions made, when the caller made them before reporting (the command line).
    pub cleanup: cleanup::CleanupReport,
    /// What did not fit in the run's message, when the user asked the plugin to push it.
    pub rest: Option<watcher::Rest>,
}

impl Mirror {
    /// One configuration's documents in this knowledge base, as asked with this key: the key
    /// of its watcher and of what the process remembers of it.
    pub fn key(&self, config_hash: &str) -> String {
        format!(
            "{}|{}|{}",
            self.api.shown_base(),
            record::record_key(config_hash, &self.dataset),
            self.api.key_fingerprint()
        )
    }

    /// What an earlier run remembered: this process's memory first, then the store.
    pub async fn remembered<S: crate::crawl::state::StateStore>(
        &self,
        store: &S,
        config_hash: &str,
    ) -> Option<KbRecord> {
        if let Some(memory) = &self.memory {
            if let Some(record) = memory.take(&self.key(config_hash)) {
                return Some(record);
            }
        }
        record::load(store, &record::record_key(config_hash, &self.dataset)).await
    }

    /// Lists the knowledge base, reading only what `known` cannot tell; documents whose
    /// `source_url` starts with one of `prefixes` are ours.
    pub async fn list(
        &self,
        prefixes: &[String],
        known: Option<&KbRecord>,
    ) -> Result<Listing, ApiError> {
        listing::list(&self.api, &self.dataset, prefixes, known).await
    }

    /// Remembers `record` in memory only (what a watcher can still reach); `changed` says
    /// whether it differs from what the store holds (the next crawl stores it then).
    pub fn remember_in_memory(&self, config_hash: &str, mut record: KbRecord, changed: bool) {
        if let Some(memory) = &self.memory {
            record.stored &= !changed;
            memory.put(&self.key(config_hash), record);
        }
    }

    /// Remembers `record` in memory and in the store.
    pub async fn remember<S: crate::crawl::state::StateStore>(
        &self,
        store: &S,
        config_hash: &str,
        record: &mut KbRecord,
    ) {
        record::save(
            store,
            &record::record_key(config_hash, &self.dataset),
            record,
        )
        .await;
        record.stored = true;
        if let Some(memory) = &self.memory {
            memory.put(&self.key(config_hash), record.clone());
        }
    }
}

/// Reads a knowledge base id: the id itself, or any URL of the knowledge base
/// (`…/datasets/<id>/documents`).
pub fn parse_knowledge_base_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let candidate = match text.find("/datasets/") {
        Some(at) => text[at + "/datasets/".len()..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or(""),
        None => text,
    };
    let id = candidate.to_ascii_lowercase();
    if api::is_uuid(&id) {
        Ok(id)
    } else {
        // The value is not echoed: a pasted URL may carry a token in its query.
        Err(format!(
            "knowledge_base_id must be the id in the knowledge base's URL (…/datasets/<id>/documents, \
             36 characters like 3f2a…-…); the value given ({} characters) holds no such id",
            text.chars().count()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knowledge_base_ids() {
        let id = "e560d9db-ff43-4deb-9cf1-a2971d563066";
        assert_eq!(parse_knowledge_base_id(id).unwrap(), id);
        assert_eq!(parse_knowledge_base_id(&id.to_uppercase()).unwrap(), id);
        assert_eq!(
            parse_knowledge_base_id(&format!("http://localhost/datasets/{id}/documents?x=1"))
                .unwrap(),
            id
        );
        assert!(parse_knowledge_base_id("my-kb").is_err());
        let error = parse_knowledge_base_id("http://x/datasets/nope?token=SeCrEt").unwrap_err();
        assert!(!error.contains("SeCrEt"), "{error}");
        assert!(parse_knowledge_base_id("").is_err());
    }
}
