//! The clone cache: one bare repository per normalized URL, a lock per entry, a marker that
//! says an entry is whole, and least-recently-used eviction under a size and a count bound.
//! A fetch that fails leaves nothing behind.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::url::RepoUrl;
use super::GitError;
use crate::EnvVars;

/// Written into an entry after a fetch completed; its mtime is the entry's last use. (Named
/// after the cache's first user; kept so existing caches stay valid.)
const MARKER: &str = "git-datasource-complete";
/// The default size bound of the whole cache.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The default bound on the number of cached repositories.
pub const DEFAULT_MAX_ENTRIES: usize = 500;

#[derive(Debug, Clone)]
pub struct RepoCache {
    root: PathBuf,
    max_bytes: u64,
    max_entries: usize,
}

/// The directory of one repository, and its lock file.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub dir: PathBuf,
    lock_path: PathBuf,
}

/// Held while an entry is in use; other users of the same entry wait.
#[derive(Debug)]
pub struct EntryLock {
    _file: File,
}

impl RepoCache {
    /// A cache under `root` bounded to `max_bytes` and 500 repositories.
    pub fn new(root: PathBuf, max_bytes: u64) -> Self {
        RepoCache {
            root,
            max_bytes,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }

    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries.max(1);
        self
    }

    /// `<PREFIX>_CACHE_DIR`, else `.<prefix>-cache` under the working directory (the daemon
    /// keeps the plugin's working directory across restarts), else the system temp dir.
    /// `<PREFIX>_CACHE_MAX_BYTES` and `<PREFIX>_CACHE_MAX_ENTRIES` bound it.
    pub fn from_env(env: EnvVars) -> Self {
        let configured = env.get("CACHE_DIR").map(PathBuf::from);
        let name = format!("{}-cache", env.dir_name());
        let under_cwd = std::env::current_dir()
            .ok()
            .map(|d| d.join(format!(".{name}")));
        let root = configured
            .into_iter()
            .chain(under_cwd)
            .find(|dir| std::fs::create_dir_all(dir).is_ok() && is_writable(dir))
            .unwrap_or_else(|| std::env::temp_dir().join(name));
        Self::with_env_bounds(root, env)
    }

    /// A cache under `root`, bounded by `<PREFIX>_CACHE_MAX_BYTES` and
    /// `<PREFIX>_CACHE_MAX_ENTRIES` (else the default bounds).
    pub fn with_env_bounds(root: PathBuf, env: EnvVars) -> Self {
        let max_bytes = env.number("CACHE_MAX_BYTES").unwrap_or(DEFAULT_MAX_BYTES);
        let max_entries = env
            .number("CACHE_MAX_ENTRIES")
            .unwrap_or(DEFAULT_MAX_ENTRIES);
        RepoCache::new(root, max_bytes).with_max_entries(max_entries)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry(&self, url: &RepoUrl) -> CacheEntry {
        let key = url.normalized();
        let hash = hex::encode(&Sha256::digest(key.as_bytes())[..8]);
        let slug: String = key
            .rsplit('/')
            .next()
            .map(|name| name.strip_suffix(".git").unwrap_or(name))
            .unwrap_or("repo")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        let name = format!("{slug}-{hash}");
        CacheEntry {
            dir: self.root.join(format!("{name}.git")),
            lock_path: self.root.join(format!("{name}.lock")),
        }
    }

    /// Waits for the entry's lock. Lock files are removed with their entry, so the lock
    /// taken must still be the file at the lock path (else another holder removed it: retry).
    pub fn lock(&self, entry: &CacheEntry) -> Result<EntryLock, GitError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| GitError::Cache(format!("cannot create {}: {e}", self.root.display())))?;
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&entry.lock_path)
                .map_err(|e| {
                    GitError::Cache(format!("cannot open {}: {e}", entry.lock_path.display()))
                })?;
            file.lock().map_err(|e| {
                GitError::Cache(format!("cannot lock {}: {e}", entry.lock_path.display()))
            })?;
            if same_file(&file, &entry.lock_path) {
                return Ok(EntryLock { _file: file });
            }
        }
    }

    /// Removes least recently used entries (never `keep`, never one in use) until the cache
    /// fits its bounds, and lock files left without an entry.
    pub fn evict(&self, keep: &CacheEntry) {
        let Ok(dirs) = std::fs::read_dir(&self.root) else {
            return;
        };
        let mut entries: Vec<(SystemTime, u64, CacheEntry)> = dirs
            .filter_map(Result::ok)
            .map(|d| d.path())
            .filter(|p| p.extension().is_some_and(|e| e == "git") && p.is_dir())
            .map(|dir| {
                let lock_path = dir.with_extension("lock");
                let used = std::fs::metadata(dir.join(MARKER))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (used, dir_size(&dir), CacheEntry { dir, lock_path })
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
        let mut count = entries.len();
        entries.sort_by_key(|(used, _, _)| *used);
        for (_, size, entry) in entries {
            if total <= self.max_bytes && count <= self.max_entries {
                break;
            }
            if entry.dir == keep.dir {
                continue;
            }
            let Ok(file) = File::options().write(true).open(&entry.lock_path) else {
                continue;
            };
            if file.try_lock().is_ok() && entry.remove().is_ok() {
                tracing::info!(
                    "evicted {} ({size} bytes) from the repository cache",
                    entry.dir.display()
                );
                total = total.saturating_sub(size);
                count -= 1;
            }
        }
        self.drop_stray_locks();
    }

    /// Lock files whose entry is gone (and that nobody holds).
    fn drop_stray_locks(&self) {
        let Ok(files) = std::fs::read_dir(&self.root) else {
            return;
        };
        for path in files.filter_map(Result::ok).map(|f| f.path()) {
            if path.extension().is_none_or(|e| e != "lock") || path.with_extension("git").exists() {
                continue;
            }
            if let Ok(file) = File::options().write(true).open(&path) {
                if file.try_lock().is_ok() && same_file(&file, &path) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}

impl CacheEntry {
    /// Whether a fetch into this entry ever completed.
    pub fn is_complete(&self) -> bool {
        self.dir.join(MARKER).is_file()
    }

    /// Removes the entry and its lock file; call it holding the lock (which stays held on
    /// the unlinked file until dropped, so nobody else uses the entry meanwhile).
    pub fn remove(&self) -> std::io::Result<()> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)?;
        }
        match std::fs::remove_file(&self.lock_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Opens the entry's repository if it is whole, else starts it afresh.
    pub fn open_or_init(&self) -> Result<git2::Repository, GitError> {
        if self.dir.join(MARKER).is_file() {
            if let Ok(repo) = git2::Repository::open_bare(&self.dir) {
                return Ok(repo);
            }
            tracing::warn!("{} is damaged; cloning again", self.dir.display());
        }
        self.reset()
    }

    /// Throws the entry away and starts an empty bare repository.
    pub fn reset(&self) -> Result<git2::Repository, GitError> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(|e| {
                GitError::Cache(format!("cannot remove {}: {e}", self.dir.display()))
            })?;
        }
        git2::Repository::init_bare(&self.dir).map_err(|e| {
            GitError::Cache(format!(
                "cannot create {}: {}",
                self.dir.display(),
                e.message()
            ))
        })
    }

    /// Records a completed fetch; the marker's mtime is the entry's last use.
    pub fn mark_complete(&self) -> Result<(), GitError> {
        let marker = self.dir.join(MARKER);
        let file = File::create(&marker)
            .map_err(|e| GitError::Cache(format!("cannot write {}: {e}", marker.display())))?;
        let _ = file.set_modified(SystemTime::now());
        Ok(())
    }
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Whether an open file is the one at `path` now (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = std::fs::remove_file(probe);
    ok
}
