//! Where a [`KbRecord`] is kept: in the plugin process's memory (the daemon keeps it running,
//! and the background watcher can only update memory once the crawl's session has ended), and
//! in the state store so a restart reads only the new front of the list. In the store the
//! documents are cut into content-defined chunks (a chunk ends after a document whose id
//! hashes to a boundary, about 1,024 documents), each compressed and named by its hash, under
//! a small compressed head that lists them: a knowledge base of 100,000 documents is about a
//! hundred values of under a megabyte, and an import that adds documents at the front of the
//! list rewrites the first chunk, not the rest. The head is written last; a head naming a
//! missing or damaged chunk is no record (the next run lists in full).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::documents::KbDocument;
use super::listing::KbRecord;
use crate::store::StateStore;

/// A chunk ends after a document whose id hashes to these low bits clear, or once it holds
/// this many bytes of JSON.
const BOUNDARY_MASK: u32 = 0x3ff;
const MAX_CHUNK_RAW: usize = 1024 * 1024;
/// More chunks than this (a knowledge base of some 500,000 documents) are not stored: the
/// next process start lists in full.
const MAX_CHUNKS: usize = 512;
/// What one value may decompress to.
const MAX_RAW: u64 = 64 * 1024 * 1024;

pub fn record_key(config_hash: &str, dataset: &str) -> String {
    format!("git_kb:{config_hash}:{dataset}")
}

fn chunk_key(key: &str, id: &str) -> String {
    format!("{key}:{id}")
}

/// The stored head: everything but the documents, and the chunks that hold them in order.
#[derive(Serialize, Deserialize)]
struct Head {
    total: usize,
    #[serde(default)]
    settled: Option<String>,
    #[serde(default)]
    skipped: Vec<(String, String)>,
    chunks: Vec<String>,
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
    let head = match store.get(key).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return None,
        Err(error) => {
            tracing::warn!(
                "reading the remembered document list failed ({error}); listing in full"
            );
            return None;
        }
    };
    let Some(json) = inflate(&head) else {
        tracing::warn!("ignoring an unreadable {key}");
        return None;
    };
    let Ok(head) = serde_json::from_slice::<Head>(&json) else {
        // Written whole in one value by an earlier version.
        let whole = serde_json::from_slice::<KbRecord>(&json).ok();
        if whole.is_none() {
            tracing::warn!("ignoring an unreadable {key}");
        }
        return whole.map(|record| KbRecord {
            stored: true,
            ..record
        });
    };
    let mut docs = Vec::with_capacity(head.total);
    for id in head.chunks.iter().take(MAX_CHUNKS) {
        let chunk = match store.get(&chunk_key(key, id)).await {
            Ok(Some(bytes)) if chunk_id(&bytes) == *id => bytes,
            _ => {
                tracing::warn!("{key} names a missing or damaged chunk; listing in full");
                return None;
            }
        };
        let part: Vec<KbDocument> =
            inflate(&chunk).and_then(|json| serde_json::from_slice(&json).ok())?;
        docs.extend(part);
    }
    Some(KbRecord {
        total: head.total,
        docs,
        settled: head.settled,
        skipped: head.skipped,
        stored: true,
        chunks: head.chunks,
    })
}

/// Stores the record: the chunks the store does not hold yet, then the head, then drops the
/// chunks of the record it replaces that it no longer names. A failure only costs the next
/// process a full listing.
pub async fn save<S: StateStore>(store: &S, key: &str, record: &mut KbRecord) {
    let chunks = cut(&record.docs);
    if chunks.len() > MAX_CHUNKS {
        tracing::info!(
            "the remembered document list is {} chunks; not storing it",
            chunks.len()
        );
        return;
    }
    for (id, bytes) in &chunks {
        if record.chunks.contains(id) {
            continue;
        }
        if let Err(error) = store.set(&chunk_key(key, id), bytes).await {
            tracing::warn!("storing the remembered document list failed: {error}");
            return;
        }
    }
    let head = Head {
        total: record.total,
        settled: record.settled.clone(),
        skipped: record.skipped.clone(),
        chunks: chunks.iter().map(|(id, _)| id.clone()).collect(),
    };
    let json = serde_json::to_vec(&head).expect("a head serializes");
    if let Err(error) = store.set(key, &deflate(&json)).await {
        tracing::warn!("storing the remembered document list failed: {error}");
        return;
    }
    for old in &record.chunks {
        if !head.chunks.contains(old) {
            if let Err(error) = store.del(&chunk_key(key, old)).await {
                tracing::debug!("an old chunk of the document list stays: {error}");
            }
        }
    }
    record.chunks = head.chunks;
}

/// The documents cut into compressed chunks, in order, each with its content address.
fn cut(docs: &[KbDocument]) -> Vec<(String, Vec<u8>)> {
    let mut chunks = Vec::new();
    let mut part: Vec<&KbDocument> = Vec::new();
    let mut raw = 0;
    for doc in docs {
        raw += doc.id.len() + doc.ours.as_ref().map_or(16, |o| o.path.len() + 160);
        part.push(doc);
        if is_boundary(&doc.id) || raw >= MAX_CHUNK_RAW {
            chunks.push(seal(&part));
            (part, raw) = (Vec::new(), 0);
        }
    }
    if !part.is_empty() {
        chunks.push(seal(&part));
    }
    chunks
}

fn seal(docs: &[&KbDocument]) -> (String, Vec<u8>) {
    let json = serde_json::to_vec(docs).expect("documents serialize");
    let bytes = deflate(&json);
    (chunk_id(&bytes), bytes)
}

fn chunk_id(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn is_boundary(id: &str) -> bool {
    // FNV-1a: cheap and stable across versions.
    let hash = id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash & BOUNDARY_MASK == 0
}

fn deflate(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn inflate(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(bytes)
        .take(MAX_RAW)
        .read_to_end(&mut out)
        .ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::documents::{DocState, OurDocument};
    use crate::store::files::FileStore;
    use proptest::prelude::*;

    fn doc(n: usize) -> KbDocument {
        KbDocument {
            id: format!("00000000-0000-4000-8000-{n:012x}"),
            ours: (!n.is_multiple_of(7)).then(|| OurDocument {
                path: format!("docs/{}/{n}.md", n % 31),
                blob: Some(format!("{n:040x}")),
                state: DocState::Indexed,
                archived: false,
                created_at: n as i64,
                position: n as i64,
                genuine: Some(true),
                tagged: n.is_multiple_of(3),
            }),
        }
    }

    fn record(ids: impl Iterator<Item = usize>) -> KbRecord {
        let docs: Vec<KbDocument> = ids.map(doc).collect();
        KbRecord {
            total: docs.len(),
            docs,
            settled: Some("c0ffee".into()),
            skipped: vec![("bin/x.png".into(), "ab".repeat(20))],
            ..KbRecord::default()
        }
    }

    fn keys(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8))]

        /// Records around the size the single value used to stop at (about 15,000
        /// documents), through a history of imports at the front and deletions anywhere:
        /// each stored record reads back whole, an import rewrites few chunks, and no chunk
        /// is left behind that the head does not name.
        #[test]
        fn records_round_trip_through_a_history(
            start in 14_000usize..16_500,
            steps in prop::collection::vec((0usize..300, 0usize..200), 1..4),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let store = FileStore::new(dir.path().to_path_buf());
            let key = record_key("h", "d");
            let runtime = runtime();
            let mut current = record(0..start);
            let mut next = start;
            runtime.block_on(save(&store, &key, &mut current));
            for (added, deleted) in steps {
                let written_before = keys(dir.path());
                // An import at the front (newest first), deletions spread over the list.
                let mut docs: Vec<KbDocument> = (next..next + added).rev().map(doc).collect();
                next += added;
                let stride = (current.docs.len() / deleted.max(1)).max(1);
                docs.extend(
                    current.docs.iter().enumerate()
                        .filter(|(i, _)| deleted == 0 || i % stride != 0)
                        .map(|(_, d)| d.clone()),
                );
                current.total = docs.len();
                current.docs = docs;
                runtime.block_on(save(&store, &key, &mut current));
                let loaded = runtime.block_on(load(&store, &key)).expect("stored");
                prop_assert_eq!(&loaded.docs, &current.docs);
                prop_assert_eq!((loaded.total, &loaded.settled), (current.total, &current.settled));
                let written = keys(dir.path());
                prop_assert_eq!(written.len(), loaded.chunks.len() + 1, "only named chunks stay");
                if deleted == 0 {
                    let new = written.iter().filter(|k| !written_before.contains(k)).count();
                    prop_assert!(new <= 3, "an import rewrote {} chunks", new);
                }
            }
        }
    }

    #[test]
    fn a_missing_chunk_or_garbage_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path().to_path_buf());
        let key = record_key("h", "d");
        let runtime = runtime();
        let mut stored = record(0..3000);
        runtime.block_on(save(&store, &key, &mut stored));
        assert!(stored.chunks.len() > 1);
        let loaded = runtime.block_on(load(&store, &key)).unwrap();
        assert_eq!(loaded.docs, stored.docs);
        let victim = chunk_key(&key, &stored.chunks[1]);
        runtime.block_on(store.set(&victim, b"damaged")).unwrap();
        assert!(runtime.block_on(load(&store, &key)).is_none());
        runtime.block_on(store.set(&key, b"not zlib")).unwrap();
        assert!(runtime.block_on(load(&store, &key)).is_none());
        // A record an earlier version stored whole is still read.
        let whole = deflate(&serde_json::to_vec(&stored).unwrap());
        runtime.block_on(store.set(&key, &whole)).unwrap();
        let loaded = runtime.block_on(load(&store, &key)).unwrap();
        assert_eq!((loaded.docs, loaded.stored), (stored.docs, true));
    }
}
