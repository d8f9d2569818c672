//! Mirroring: the knowledge base itself is the sync state. One [`Mirroring`] owns one
//! configuration's documents in one knowledge base: it lists them (reading only what changed
//! since the remembered list), plans against the branch, deletes, pushes through the
//! published pipeline, waits while they index, tags them with their Git metadata, settles
//! and remembers. The crawl, the
//! background watch that follows it, and `sync` are its three drivers.

mod batcher;
pub mod cleanup;
pub mod documents;
pub mod listing;
pub mod metadata;
mod mirroring;
pub mod plan;
pub mod push;
pub mod record;
pub mod watch;
pub mod watchers;

use std::sync::Arc;
use std::time::Duration;

use crate::dify::knowledge::{ApiError, KnowledgeApi};
use crate::store::StateStore;
use listing::{KbRecord, Listing};
pub use mirroring::{MirrorConfig, Mirroring, Pipeline};
use record::RecordMemory;

/// One knowledge base to mirror into, with what the process remembers of it.
#[derive(Clone)]
pub struct Mirror {
    pub api: KnowledgeApi,
    pub dataset: String,
    /// The plugin process's memory of earlier listings (none for the command line).
    pub memory: Option<Arc<RecordMemory>>,
}

/// How often the watch polls, and how long it waits for the import to make progress.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub poll: Duration,
    pub max_wait: Duration,
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
    pub async fn remembered<S: StateStore>(
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

    /// Remembers `record` in memory only (what a watch can still reach); `changed` says
    /// whether it differs from what the store holds (the next crawl stores it then).
    pub fn remember_in_memory(&self, config_hash: &str, mut record: KbRecord, changed: bool) {
        if let Some(memory) = &self.memory {
            record.stored &= !changed;
            memory.put(&self.key(config_hash), record);
        }
    }

    /// Remembers `record` in memory and in the store.
    pub async fn remember<S: StateStore>(
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
