//! Where a [`KbRecord`] is kept: in the plugin process's memory (the daemon keeps it running,
//! and the background watcher can only update memory once the crawl's session has ended), and
//! in the state store as a zlib-compressed JSON value so a restart reads only the new front.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use super::listing::KbRecord;
use crate::store::StateStore;

/// A larger record is not stored (the next process start reads the list in full).
const MAX_STORED_BYTES: usize = 1024 * 1024;

pub fn record_key(config_hash: &str, dataset: &str) -> String {
    format!("git_kb:{config_hash}:{dataset}")
}

/// Records by (API base, knowledge base, configuration), shared by a process's crawls and
/// watchers. A record is only ever a hint: every run still asks the API, with its own key.
#[derive(Default)]
pub struct RecordMemory(Mutex<HashMap<String, KbRecord>>);

impl RecordMemory {
    /// Takes the record out: its run owns it until it is put back.
    pub fn take(&self, key: &str) -> Option<KbRecord> {
        self.0.lock().expect("record memory").remove(key)
    }

    pub fn put(&self, key: &str, record: KbRecord) {
        self.0
            .lock()
            .expect("record memory")
            .insert(key.to_string(), record);
    }
}

pub async fn load<S: StateStore>(store: &S, key: &str) -> Option<KbRecord> {
    let bytes = match store.get(key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(
                "reading the remembered document list failed ({error}); listing in full"
            );
            return None;
        }
    };
    let mut json = Vec::new();
    let decoded = flate2::read::ZlibDecoder::new(bytes.as_slice())
        .take(64 * MAX_STORED_BYTES as u64)
        .read_to_end(&mut json)
        .ok()
        .and_then(|_| serde_json::from_slice(&json).ok());
    if decoded.is_none() {
        tracing::warn!("ignoring an unreadable {key}");
    }
    decoded.map(|record: KbRecord| KbRecord {
        stored: true,
        ..record
    })
}

/// Stores the record; a failure only costs the next process a full listing.
pub async fn save<S: StateStore>(store: &S, key: &str, record: &KbRecord) {
    let json = serde_json::to_vec(record).expect("a record serializes");
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&json).expect("writing to memory");
    let bytes = encoder.finish().expect("writing to memory");
    if bytes.len() > MAX_STORED_BYTES {
        tracing::info!(
            "the remembered document list is {} bytes compressed; not storing it",
            bytes.len()
        );
        return;
    }
    if let Err(error) = store.set(key, &bytes).await {
        tracing::warn!("storing the remembered document list failed: {error}");
    }
}
