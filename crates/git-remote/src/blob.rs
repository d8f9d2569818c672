//! Reading blobs straight from the object database and sorting them into text or a skip
//! reason, spread over the available cores.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

use git2::{Oid, Repository};

use super::tree::{FileEntry, SkipReason};

/// The default limit on a file's size.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 5_000_000;
/// How much of a file is searched for a NUL byte.
const BINARY_SNIFF: usize = 8 * 1024;
const LFS_POINTER_PREFIX: &[u8] = b"version https://git-lfs.github.com/spec/v1";
const BOM: &str = "\u{feff}";

/// Signatures of common binary formats that may not contain a NUL early on.
const MAGIC: [&[u8]; 16] = [
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"%PDF-",
    b"PK\x03\x04",
    b"\x1f\x8b",
    b"\x7fELF",
    b"BZh",
    b"7z\xbc\xaf\x27\x1c",
    b"\xfd7zXZ\x00",
    b"\x00asm",
    b"OggS",
    b"RIFF",
    b"ID3",
    b"\xca\xfe\xba\xbe",
];

/// What reading one blob gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRead {
    Text(String),
    /// Permanently not deliverable.
    Skipped(SkipReason),
    /// The object could not be read; worth retrying on a later run.
    Failed(String),
}

/// Sorts a file's bytes into text (UTF-8, a BOM dropped) or why it is not text.
pub fn classify(bytes: &[u8]) -> Result<&str, SkipReason> {
    if bytes.starts_with(LFS_POINTER_PREFIX) && bytes.len() < 1024 {
        return Err(SkipReason::LfsPointer);
    }
    if MAGIC.iter().any(|magic| bytes.starts_with(magic))
        || bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
    {
        return Err(SkipReason::Binary);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| SkipReason::NotUtf8)?;
    Ok(text.strip_prefix(BOM).unwrap_or(text))
}

/// Reads one blob: the size from the object header first, so a large file is never loaded.
pub fn read_blob(repo: &Repository, oid: Oid, max_bytes: u64) -> BlobRead {
    match inspect_blob(repo, oid, max_bytes, str::to_string) {
        Ok(text) => BlobRead::Text(text),
        Err(Unread::Skipped(reason)) => BlobRead::Skipped(reason),
        Err(Unread::Failed(why)) => BlobRead::Failed(why),
    }
}

/// Why a blob's text was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Permanently not deliverable.
    Skipped(SkipReason),
    /// The object could not be read.
    Failed(String),
}

/// Reads one blob as [`read_blob`] does and hands its text to `on_text` without copying it.
pub fn inspect_blob<T>(
    repo: &Repository,
    oid: Oid,
    max_bytes: u64,
    on_text: impl FnOnce(&str) -> T,
) -> Result<T, Unread> {
    let failed = |e: git2::Error| Unread::Failed(format!("blob {oid}: {}", e.message()));
    let (size, _) = repo
        .odb()
        .and_then(|odb| odb.read_header(oid))
        .map_err(failed)?;
    if size as u64 > max_bytes {
        return Err(Unread::Skipped(SkipReason::TooLarge {
            size: size as u64,
            limit: max_bytes,
        }));
    }
    let blob = repo.find_blob(oid).map_err(failed)?;
    classify(blob.content())
        .map(on_text)
        .map_err(Unread::Skipped)
}

/// Reads blobs in parallel: one worker thread per core, each with its own repository handle
/// (libgit2 handles are not shared), kept for the reader's life so pack indexes and caches
/// stay warm from batch to batch.
pub struct BlobReader {
    jobs: Option<mpsc::Sender<(usize, Oid)>>,
    results: mpsc::Receiver<(usize, BlobRead)>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl BlobReader {
    pub fn new(repo_dir: &Path, max_bytes: u64) -> BlobReader {
        let workers_wanted = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (jobs, job_queue) = mpsc::channel::<(usize, Oid)>();
        let job_queue = Arc::new(Mutex::new(job_queue));
        let (done, results) = mpsc::channel();
        let workers = (0..workers_wanted)
            .map(|_| {
                let (job_queue, done, repo_dir) =
                    (job_queue.clone(), done.clone(), repo_dir.to_path_buf());
                std::thread::spawn(move || {
                    let repo = Repository::open_bare(&repo_dir);
                    loop {
                        let job = job_queue.lock().expect("job queue").recv();
                        let Ok((index, oid)) = job else { break };
                        let read = match &repo {
                            Ok(repo) => read_blob(repo, oid, max_bytes),
                            Err(e) => BlobRead::Failed(e.message().to_string()),
                        };
                        if done.send((index, read)).is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        BlobReader {
            jobs: Some(jobs),
            results,
            workers,
        }
    }

    /// Reads every entry's blob; results in entry order.
    pub fn read(&self, entries: &[FileEntry]) -> Vec<BlobRead> {
        let jobs = self.jobs.as_ref().expect("the reader is open");
        for (index, entry) in entries.iter().enumerate() {
            jobs.send((index, entry.oid))
                .expect("blob workers are running");
        }
        let mut reads: Vec<Option<BlobRead>> = vec![None; entries.len()];
        for _ in 0..entries.len() {
            let (index, read) = self.results.recv().expect("blob workers are running");
            reads[index] = Some(read);
        }
        reads
            .into_iter()
            .map(|read| read.expect("every entry was read"))
            .collect()
    }
}

impl Drop for BlobReader {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Reads every entry's blob, in parallel over the available cores, results in entry order.
pub fn read_blobs(repo_dir: &Path, entries: &[FileEntry], max_bytes: u64) -> Vec<BlobRead> {
    BlobReader::new(repo_dir, max_bytes).read(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn kinds_of_content() {
        assert_eq!(classify(b"hello"), Ok("hello"));
        assert_eq!(classify("\u{feff}# Title".as_bytes()), Ok("# Title"));
        assert_eq!(classify(b"\x89PNG\r\n\x1a\nrest"), Err(SkipReason::Binary));
        assert_eq!(classify(b"%PDF-1.7 text-looking"), Err(SkipReason::Binary));
        assert_eq!(classify(b"abc\0def"), Err(SkipReason::Binary));
        assert_eq!(classify(b"caf\xe9"), Err(SkipReason::NotUtf8));
        let pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n";
        assert_eq!(classify(pointer), Err(SkipReason::LfsPointer));
        assert_eq!(classify(b""), Ok(""));
    }

    proptest! {
        #[test]
        fn any_string_without_nul_is_text(s in "[^\u{0}]{0,200}") {
            prop_assume!(!MAGIC.iter().any(|m| s.as_bytes().starts_with(m)) && !s.starts_with("version https://git-lfs"));
            let expected = s.strip_prefix(BOM).unwrap_or(&s);
            prop_assert_eq!(classify(s.as_bytes()), Ok(expected));
        }

        #[test]
        fn a_nul_in_the_first_8k_means_binary(prefix in "[a-z]{0,100}", at in 0usize..8000) {
            let mut bytes = prefix.into_bytes();
            bytes.resize(at.max(bytes.len()), b'a');
            bytes.push(0);
            bytes.extend_from_slice(b"tail");
            prop_assert_eq!(classify(&bytes), Err(SkipReason::Binary));
        }
    }
}
