//! The snapshot codec: a sorted list of `(path, blob id)` cut into content-defined chunks
//! (so an edit rewrites one chunk, not all that follow), each compressed and named by its
//! hash. The design of a Git tree applied to our sync state. A chunk read back is known by
//! the digest of its entries, so the next save names it again without compressing it again.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use git2::Oid;
use sha2::{Digest, Sha256};

/// What has been delivered: path → blob id.
pub type Entries = BTreeMap<String, Oid>;

/// A chunk ends after an entry whose path hash has these low bits clear (about 1,024
/// entries a chunk) or once it holds this many raw bytes.
const BOUNDARY_MASK: u32 = 0x3ff;
const MAX_CHUNK_RAW: usize = 512 * 1024;
const OID_LEN: usize = 20;
/// What one stored chunk may decompress to (a chunk is cut after 512 KiB and one entry).
const MAX_CHUNK_INFLATED: u64 = 8 * 1024 * 1024;

/// The SHA-256 of a chunk's entries, before compression.
pub type RawDigest = [u8; 32];

/// Chunks already stored, by the digest of their entries: their ids.
pub type KnownChunks = HashMap<RawDigest, String>;

/// One encoded chunk and its content address; no bytes when it is one of the known chunks
/// (stored already, under that id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub id: String,
    pub bytes: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored snapshot is unreadable: {0}")]
pub struct SnapshotError(pub String);

/// Cuts `entries` into chunks, in path order: the `known` ones named, the others compressed.
pub fn encode(entries: &Entries, known: &KnownChunks) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut raw = Vec::new();
    for (path, oid) in entries {
        raw.extend_from_slice(oid.as_bytes());
        raw.extend_from_slice(path.as_bytes());
        raw.push(0);
        if is_boundary(path) || raw.len() >= MAX_CHUNK_RAW {
            chunks.push(seal(&raw, known));
            raw.clear();
        }
    }
    if !raw.is_empty() {
        chunks.push(seal(&raw, known));
    }
    chunks
}

/// Reads chunks back into entries, with the digest of each chunk's entries.
pub fn decode<'a>(
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Entries, Vec<RawDigest>), SnapshotError> {
    let mut entries = Entries::new();
    let mut digests = Vec::new();
    for compressed in chunks {
        let mut raw = Vec::new();
        ZlibDecoder::new(compressed)
            .take(MAX_CHUNK_INFLATED + 1)
            .read_to_end(&mut raw)
            .map_err(|e| SnapshotError(e.to_string()))?;
        if raw.len() as u64 > MAX_CHUNK_INFLATED {
            return Err(SnapshotError(format!(
                "a chunk inflates past {MAX_CHUNK_INFLATED} bytes"
            )));
        }
        digests.push(Sha256::digest(&raw).into());
        let mut rest = raw.as_slice();
        while !rest.is_empty() {
            if rest.len() < OID_LEN + 1 {
                return Err(SnapshotError("truncated entry".into()));
            }
            let oid = Oid::from_bytes(&rest[..OID_LEN])
                .map_err(|e| SnapshotError(e.message().to_string()))?;
            let after = &rest[OID_LEN..];
            let end = after
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| SnapshotError("unterminated path".into()))?;
            let path = std::str::from_utf8(&after[..end])
                .map_err(|_| SnapshotError("path is not UTF-8".into()))?;
            entries.insert(path.to_string(), oid);
            rest = &after[end + 1..];
        }
    }
    Ok((entries, digests))
}

/// The content address of encoded bytes.
pub fn chunk_id(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn seal(raw: &[u8], known: &KnownChunks) -> Chunk {
    if !known.is_empty() {
        let digest: RawDigest = Sha256::digest(raw).into();
        if let Some(id) = known.get(&digest) {
            return Chunk {
                id: id.clone(),
                bytes: None,
            };
        }
    }
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(raw).expect("writing to memory");
    let bytes = encoder.finish().expect("writing to memory");
    Chunk {
        id: chunk_id(&bytes),
        bytes: Some(bytes),
    }
}

fn is_boundary(path: &str) -> bool {
    // FNV-1a: cheap and stable across versions.
    let hash = path.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash & BOUNDARY_MASK == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn oid(n: u32) -> Oid {
        let mut bytes = [0u8; 20];
        bytes[..4].copy_from_slice(&n.to_be_bytes());
        Oid::from_bytes(&bytes).unwrap()
    }

    fn entries(paths: &[String]) -> Entries {
        paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), oid(i as u32)))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn round_trips(paths in prop::collection::btree_set("[a-zA-Z0-9_./ é-]{1,40}", 0..3000)) {
            let paths: Vec<String> = paths.into_iter().collect();
            let original = entries(&paths);
            let chunks = encode(&original, &KnownChunks::new());
            let (decoded, _) = decode(chunks.iter().map(|c| c.bytes.as_deref().unwrap())).unwrap();
            prop_assert_eq!(decoded, original);
            for chunk in &chunks {
                prop_assert_eq!(&chunk.id, &chunk_id(chunk.bytes.as_ref().unwrap()));
            }
        }

        #[test]
        fn an_edit_rewrites_few_chunks(n in 3000usize..6000, edit in 0usize..3000) {
            let paths: Vec<String> = (0..n).map(|i| format!("dir{}/file{i}.md", i % 13)).collect();
            let before = entries(&paths);
            let mut after = before.clone();
            after.insert(format!("{}x", paths[edit]), oid(999_999));
            let old: std::collections::HashSet<String> = encode(&before, &KnownChunks::new()).into_iter().map(|c| c.id).collect();
            let new_chunks = encode(&after, &KnownChunks::new());
            let changed = new_chunks.iter().filter(|c| !old.contains(&c.id)).count();
            prop_assert!(changed <= 2, "{} of {} chunks changed", changed, new_chunks.len());
        }

        /// Chunks read back are named again, not compressed again, whatever compression
        /// wrote them; only the edited ones come with bytes, and everything reads back.
        #[test]
        fn a_save_after_a_load_compresses_only_what_changed(
            n in 3000usize..6000,
            edit in 0usize..3000,
            level in 0u32..10,
        ) {
            let paths: Vec<String> = (0..n).map(|i| format!("dir{}/file{i}.md", i % 13)).collect();
            let before = entries(&paths);
            // Stored as an older version may have: another compression level.
            let stored: Vec<(String, Vec<u8>)> = encode(&before, &KnownChunks::new())
                .into_iter()
                .map(|c| {
                    let mut raw = Vec::new();
                    ZlibDecoder::new(c.bytes.as_deref().unwrap()).read_to_end(&mut raw).unwrap();
                    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(level));
                    encoder.write_all(&raw).unwrap();
                    let bytes = encoder.finish().unwrap();
                    (chunk_id(&bytes), bytes)
                })
                .collect();
            let (read, digests) = decode(stored.iter().map(|(_, b)| b.as_slice())).unwrap();
            prop_assert_eq!(&read, &before);
            let known: KnownChunks = digests.into_iter().zip(stored.iter().map(|(id, _)| id.clone())).collect();
            let mut after = before.clone();
            after.insert(format!("{}x", paths[edit]), oid(999_999));
            let chunks = encode(&after, &known);
            let fresh: Vec<&Chunk> = chunks.iter().filter(|c| c.bytes.is_some()).collect();
            prop_assert!(fresh.len() <= 2, "{} of {} chunks compressed", fresh.len(), chunks.len());
            let by_id: HashMap<&str, &[u8]> = stored.iter().map(|(id, b)| (id.as_str(), b.as_slice()))
                .chain(fresh.iter().map(|c| (c.id.as_str(), c.bytes.as_deref().unwrap())))
                .collect();
            let (again, _) = decode(chunks.iter().map(|c| by_id[c.id.as_str()])).unwrap();
            prop_assert_eq!(again, after);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode([b"not zlib".as_slice()]).is_err());
    }

    /// A stored value that inflates without end is refused, not read into memory.
    #[test]
    fn a_chunk_that_inflates_too_far_is_an_error() {
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::best());
        for _ in 0..64 {
            encoder.write_all(&[b'a'; 256 * 1024]).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        let error = decode([bomb.as_slice()]).unwrap_err();
        assert!(error.0.contains("inflates past"), "{error}");
    }
}
