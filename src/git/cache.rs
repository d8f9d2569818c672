//! The clone cache: one bare repository per normalized URL, a lock per entry, a marker that
//! says an entry is whole, and least-recently-used eviction under a size bound.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::url::RepoUrl;
use super::GitError;

/// Written into an entry after a fetch completed; its mtime is the entry's last use.
const MARKER: &str = "git-datasource-complete";
/// The default size bound of the whole cache.
pub const DEFAULT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct RepoCache {
    root: PathBuf,
    max_bytes: u64,
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
    pub fn new(root: PathBuf, max_bytes: u64) -> Self {
        RepoCache { root, max_bytes }
    }

    /// `GIT_DATASOURCE_CACHE_DIR`, else a directory under the working directory (the daemon
    /// keeps the plugin's working directory across restarts), else the system temp dir.
    /// `GIT_DATASOURCE_CACHE_MAX_BYTES` bounds its size.
    pub fn from_env() -> Self {
        let max_bytes = Self::from_env_max_bytes();
        let configured = std::env::var_os("GIT_DATASOURCE_CACHE_DIR").map(PathBuf::from);
        let under_cwd = std::env::current_dir()
            .ok()
            .map(|d| d.join(".git-datasource-cache"));
        let root = configured
            .into_iter()
            .chain(under_cwd)
            .find(|dir| std::fs::create_dir_all(dir).is_ok() && is_writable(dir))
            .unwrap_or_else(|| std::env::temp_dir().join("git-datasource-cache"));
        RepoCache::new(root, max_bytes)
    }

    /// `GIT_DATASOURCE_CACHE_MAX_BYTES`, else the default bound.
    pub fn from_env_max_bytes() -> u64 {
        std::env::var("GIT_DATASOURCE_CACHE_MAX_BYTES")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MAX_BYTES)
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

    /// Waits for the entry's lock.
    pub fn lock(&self, entry: &CacheEntry) -> Result<EntryLock, GitError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| GitError::Cache(format!("cannot create {}: {e}", self.root.display())))?;
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
        Ok(EntryLock { _file: file })
    }

    /// Removes least recently used entries (never `keep`, never one in use) until the cache
    /// fits its bound.
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
        entries.sort_by_key(|(used, _, _)| *used);
        for (_, size, entry) in entries {
            if total <= self.max_bytes {
                break;
            }
            if entry.dir == keep.dir {
                continue;
            }
            let Ok(file) = File::options().write(true).open(&entry.lock_path) else {
                continue;
            };
            if file.try_lock().is_ok() && std::fs::remove_dir_all(&entry.dir).is_ok() {
                tracing::info!(
                    "evicted {} ({size} bytes) from the repository cache",
                    entry.dir.display()
                );
                total = total.saturating_sub(size);
            }
        }
    }
}

impl CacheEntry {
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

fn is_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    let ok = File::create(&probe).is_ok();
    let _ = std::fs::remove_file(probe);
    ok
}
