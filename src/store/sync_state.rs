//! What a crawl remembers between runs, under keys the Python plugin shares
//! (`git_sha:{hash}`, `git_failed:{hash}`) and our own: the delivered snapshot, the pending
//! part of a change set that did not fit in one run, and SSH host keys seen on first use.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::snapshot::{self, Entries, KnownChunks, RawDigest};
use super::{StateError, StateStore};

pub fn sha_key(hash: &str) -> String {
    format!("git_sha:{hash}")
}
pub fn failed_key(hash: &str) -> String {
    format!("git_failed:{hash}")
}
pub fn pending_key(hash: &str) -> String {
    format!("git_pending:{hash}")
}
pub fn snapshot_key(hash: &str) -> String {
    format!("git_snapshot:{hash}")
}
fn chunk_key(hash: &str, id: &str) -> String {
    format!("git_chunk:{hash}:{id}")
}
pub fn host_key_key(host: &str) -> String {
    format!("git_hostkey:{host}")
}

/// The small record that names a set of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    pub version: u32,
    /// The commit the entries belong to.
    pub commit: String,
    pub entries: usize,
    pub chunks: Vec<String>,
    /// For a pending record: the snapshot it continues (its first chunk id, or empty).
    #[serde(default)]
    pub base: String,
    /// For a pending record: it belongs to a `full` sync, which ignores the snapshot.
    #[serde(default)]
    pub full: bool,
    /// Of a record read back: the digest of each chunk's entries (not stored).
    #[serde(skip)]
    pub digests: Vec<RawDigest>,
}

/// The delivered state of one configuration.
#[derive(Debug, Default, Clone)]
pub struct SyncState {
    /// The last fully delivered commit (`git_sha`).
    pub last_commit: Option<String>,
    /// Paths whose read failed transiently (`git_failed`).
    pub failed: Vec<String>,
    pub snapshot: Option<(ChunkRef, Entries)>,
    /// Files delivered (or permanently skipped) by earlier runs of an unfinished change set.
    pub pending: Option<(ChunkRef, Entries)>,
    /// Read from the keys of another hash (an older spelling of this configuration): its
    /// chunks are not under this hash's keys.
    pub foreign: bool,
}

impl SyncState {
    /// Every file of `commit` was delivered, and nothing is left to retry.
    pub fn settled_at(&self, commit: &str) -> bool {
        self.last_commit.as_deref() == Some(commit)
            && self.pending.is_none()
            && self.failed.is_empty()
    }

    fn referenced_chunks(&self) -> Vec<String> {
        if self.foreign {
            return Vec::new();
        }
        let refs = [&self.snapshot, &self.pending];
        refs.iter()
            .filter_map(|r| r.as_ref())
            .flat_map(|(r, _)| r.chunks.iter().cloned())
            .collect()
    }

    /// The chunks a save may name again without writing them: this state's own.
    fn known_chunks(&self) -> KnownChunks {
        if self.foreign {
            return KnownChunks::new();
        }
        let refs = [&self.snapshot, &self.pending];
        refs.iter()
            .filter_map(|r| r.as_ref())
            .flat_map(|(r, _)| r.digests.iter().copied().zip(r.chunks.iter().cloned()))
            .collect()
    }

    /// What a pending record continues: a hash of the snapshot's whole chunk list.
    fn base_id(&self) -> String {
        match &self.snapshot {
            Some((record, _)) => {
                let digest = Sha256::digest(record.chunks.join(",").as_bytes());
                format!("v2:{}", hex::encode(&digest[..8]))
            }
            None => String::new(),
        }
    }

    /// Whether a pending record was built on this state's snapshot. Records written before
    /// the `v2:` form named only the snapshot's first chunk.
    fn continues(&self, pending: &ChunkRef) -> bool {
        if pending.base.starts_with("v2:") || pending.base.is_empty() {
            return pending.base == self.base_id();
        }
        let first = self.snapshot.as_ref().and_then(|(r, _)| r.chunks.first());
        first == Some(&pending.base)
    }
}

/// The state under `hash`; when there is none, the state under `legacy` (the hash an older
/// spelling of the same configuration had), which the next save moves under `hash`.
pub async fn load<S: StateStore>(
    store: &S,
    hash: &str,
    legacy: Option<&str>,
) -> Result<SyncState, StateError> {
    let state = load_under(store, hash).await?;
    let empty = state.last_commit.is_none() && state.snapshot.is_none() && state.pending.is_none();
    match legacy {
        Some(legacy) if empty => {
            let old = load_under(store, legacy).await?;
            if old.last_commit.is_some() {
                tracing::info!("continuing from the state stored under {legacy}");
            }
            Ok(SyncState {
                foreign: true,
                ..old
            })
        }
        _ => Ok(state),
    }
}

async fn load_under<S: StateStore>(store: &S, hash: &str) -> Result<SyncState, StateError> {
    let last_commit = store
        .get(&sha_key(hash))
        .await?
        .map(|v| String::from_utf8_lossy(&v).trim().to_string())
        .filter(|s| !s.is_empty());
    let failed = match store.get(&failed_key(hash)).await? {
        Some(bytes) => serde_json::from_slice::<Vec<String>>(&bytes).unwrap_or_default(),
        None => Vec::new(),
    };
    let snapshot = load_ref(store, hash, &snapshot_key(hash)).await?;
    // The snapshot record is the commit point: its commit is the last one fully delivered,
    // whatever `git_sha` (written after it, for the Python plugin) says.
    let last_commit = match &snapshot {
        Some((record, _)) => Some(record.commit.clone()),
        None => last_commit,
    };
    let mut state = SyncState {
        last_commit,
        failed,
        snapshot,
        pending: None,
        foreign: false,
    };
    let pending = load_ref(store, hash, &pending_key(hash)).await?;
    // A pending record built on another snapshot is stale (its run was overtaken).
    state.pending = pending.filter(|(r, _)| state.continues(r));
    Ok(state)
}

async fn load_ref<S: StateStore>(
    store: &S,
    hash: &str,
    key: &str,
) -> Result<Option<(ChunkRef, Entries)>, StateError> {
    let Some(bytes) = store.get(key).await? else {
        return Ok(None);
    };
    let Ok(record) = serde_json::from_slice::<ChunkRef>(&bytes) else {
        tracing::warn!("ignoring an unreadable {key}");
        return Ok(None);
    };
    let mut chunks = Vec::with_capacity(record.chunks.len());
    for id in &record.chunks {
        match store.get(&chunk_key(hash, id)).await? {
            Some(chunk) if snapshot::chunk_id(&chunk) == *id => chunks.push(chunk),
            _ => {
                tracing::warn!("{key} names a missing or damaged chunk; ignoring it");
                return Ok(None);
            }
        }
    }
    match snapshot::decode(chunks.iter().map(Vec::as_slice)) {
        Ok((entries, digests)) => Ok(Some((ChunkRef { digests, ..record }, entries))),
        Err(error) => {
            tracing::warn!("{key}: {error}; ignoring it");
            Ok(None)
        }
    }
}

/// Records a fully delivered change set. One commit point, written last: chunks and failed
/// paths first, then the snapshot record. A failure before it leaves the previous state whole
/// (the next run delivers the same changes again); what follows it (the Python plugin's
/// `git_sha`, dropping the pending record and unreferenced chunks) is best effort, since the
/// snapshot record alone decides.
pub async fn save_complete<S: StateStore>(
    store: &S,
    hash: &str,
    commit: &str,
    delivered: &Entries,
    failed: &[String],
    old: &SyncState,
) -> Result<(), StateError> {
    let record = write_chunks(store, hash, commit, delivered, String::new(), old).await?;
    store
        .set(&failed_key(hash), python_json_list(failed).as_bytes())
        .await?;
    store.set(&snapshot_key(hash), &to_json(&record)).await?;
    if let Err(error) = store.set(&sha_key(hash), commit.as_bytes()).await {
        tracing::warn!("recording git_sha for the Python plugin failed: {error}");
    }
    if old.pending.is_some() {
        if let Err(error) = store.del(&pending_key(hash)).await {
            tracing::warn!("dropping the finished pending record failed: {error}");
        }
    }
    drop_unreferenced(store, hash, old, &record.chunks).await;
    Ok(())
}

/// Records the part of a change set delivered so far; the snapshot and commit stay. The
/// pending record is the commit point, written last.
pub async fn save_pending<S: StateStore>(
    store: &S,
    hash: &str,
    commit: &str,
    handled: &Entries,
    failed: &[String],
    old: &SyncState,
    full: bool,
) -> Result<(), StateError> {
    let mut record = write_chunks(store, hash, commit, handled, old.base_id(), old).await?;
    record.full = full;
    store
        .set(&failed_key(hash), python_json_list(failed).as_bytes())
        .await?;
    store.set(&pending_key(hash), &to_json(&record)).await?;
    let mut keep = record.chunks.clone();
    keep.extend(
        old.snapshot
            .iter()
            .flat_map(|(r, _)| r.chunks.iter().cloned()),
    );
    drop_unreferenced(store, hash, old, &keep).await;
    Ok(())
}

async fn write_chunks<S: StateStore>(
    store: &S,
    hash: &str,
    commit: &str,
    entries: &Entries,
    base: String,
    old: &SyncState,
) -> Result<ChunkRef, StateError> {
    let existing = old.referenced_chunks();
    let chunks = snapshot::encode(entries, &old.known_chunks());
    for chunk in &chunks {
        match &chunk.bytes {
            Some(bytes) if !existing.contains(&chunk.id) => {
                store.set(&chunk_key(hash, &chunk.id), bytes).await?
            }
            _ => {}
        }
    }
    Ok(ChunkRef {
        version: 1,
        commit: commit.to_string(),
        entries: entries.len(),
        chunks: chunks.into_iter().map(|c| c.id).collect(),
        base,
        full: false,
        digests: Vec::new(),
    })
}

async fn drop_unreferenced<S: StateStore>(store: &S, hash: &str, old: &SyncState, keep: &[String]) {
    for id in old.referenced_chunks() {
        if !keep.contains(&id) {
            if let Err(error) = store.del(&chunk_key(hash, &id)).await {
                tracing::warn!("could not drop an old state chunk: {error}");
            }
        }
    }
}

fn to_json(record: &ChunkRef) -> Vec<u8> {
    serde_json::to_vec(record).expect("a ChunkRef serializes")
}

/// A list of strings exactly as Python's `json.dumps` writes it (`", "` between items,
/// non-ASCII escaped), the encoding of the Python plugin's `git_failed`.
pub fn python_json_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        for unit in item.encode_utf16() {
            match unit {
                0x22 => out.push_str("\\\""),
                0x5c => out.push_str("\\\\"),
                0x0a => out.push_str("\\n"),
                0x0d => out.push_str("\\r"),
                0x09 => out.push_str("\\t"),
                0x08 => out.push_str("\\b"),
                0x0c => out.push_str("\\f"),
                0x20..=0x7e => out.push(char::from(unit as u8)),
                other => out.push_str(&format!("\\u{other:04x}")),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_paths_are_written_like_python_json_dumps() {
        // json.dumps(["a.md", "dir/é \"q\".txt", "x\ty", "😀"])
        let items = ["a.md", "dir/é \"q\".txt", "x\ty", "😀"].map(String::from);
        assert_eq!(
            python_json_list(&items),
            r#"["a.md", "dir/\u00e9 \"q\".txt", "x\ty", "\ud83d\ude00"]"#
        );
        assert_eq!(python_json_list(&[]), "[]");
        let parsed: Vec<String> = serde_json::from_str(&python_json_list(&items)).unwrap();
        assert_eq!(parsed, items);
    }
}
