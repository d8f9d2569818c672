//! The snapshot codec: a sorted list of `(path, blob id)` cut into content-defined chunks
//! (so an edit rewrites one chunk, not all that follow), each compressed and named by its
//! hash. The design of a Git tree applied to our sync state.

use std::collections::BTreeMap;
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

/// One encoded chunk and its content address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored snapshot is unreadable: {0}")]
pub struct SnapshotError(pub String);

/// Cuts `entries` into compressed chunks, in path order.
pub fn encode(entries: &Entries) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut raw = Vec::new();
    for (path, oid) in entries {
        raw.extend_from_slice(oid.as_bytes());
        raw.extend_from_slice(path.as_bytes());
        raw.push(0);
        if is_boundary(path) || raw.len() >= MAX_CHUNK_RAW {
            chunks.push(seal(&raw));
            raw.clear();
        }
    }
    if !raw.is_empty() {
        chunks.push(seal(&raw));
    }
    chunks
}

/// Reads chunks back into entries.
pub fn decode<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Entries, SnapshotError> {
    let mut entries = Entries::new();
    for compressed in chunks {
        let mut raw = Vec::new();
        ZlibDecoder::new(compressed)
            .read_to_end(&mut raw)
            .map_err(|e| SnapshotError(e.to_string()))?;
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
    Ok(entries)
}

/// The content address of encoded bytes.
pub fn chunk_id(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..16])
}

fn seal(raw: &[u8]) -> Chunk {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(raw).expect("writing to memory");
    let bytes = encoder.finish().expect("writing to memory");
    Chunk {
        id: chunk_id(&bytes),
        bytes,
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
            let chunks = encode(&original);
            let decoded = decode(chunks.iter().map(|c| c.bytes.as_slice())).unwrap();
            prop_assert_eq!(decoded, original);
            for chunk in &chunks {
                prop_assert_eq!(&chunk.id, &chunk_id(&chunk.bytes));
            }
        }

        #[test]
        fn an_edit_rewrites_few_chunks(n in 3000usize..6000, edit in 0usize..3000) {
            let paths: Vec<String> = (0..n).map(|i| format!("dir{}/file{i}.md", i % 13)).collect();
            let before = entries(&paths);
            let mut after = before.clone();
            after.insert(format!("{}x", paths[edit]), oid(999_999));
            let old: std::collections::HashSet<String> = encode(&before).into_iter().map(|c| c.id).collect();
            let new_chunks = encode(&after);
            let changed = new_chunks.iter().filter(|c| !old.contains(&c.id)).count();
            prop_assert!(changed <= 2, "{} of {} chunks changed", changed, new_chunks.len());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode([b"not zlib".as_slice()]).is_err());
    }
}
