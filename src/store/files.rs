//! Sync state as files, one per key, in a directory: the command line's store.

use std::path::{Path, PathBuf};

use super::{StateError, StateStore};

/// Sync state as files, one per key, in a directory.
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        let name: String = key
            .chars()
            .map(|c| match c {
                '/' => "%2F".to_string(),
                '%' => "%25".to_string(),
                c => c.to_string(),
            })
            .collect();
        self.dir.join(name)
    }
}

fn state_error(path: &Path, error: std::io::Error) -> StateError {
    StateError(format!("{}: {error}", path.display()))
}

impl StateStore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.path(key);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(state_error(&path, error)),
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| state_error(&self.dir, e))?;
        let path = self.path(key);
        let temporary = path.with_extension("partial");
        std::fs::write(&temporary, value).map_err(|e| state_error(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| state_error(&path, e))
    }

    async fn del(&self, key: &str) -> Result<(), StateError> {
        let path = self.path(key);
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(state_error(&path, error))
            }
            _ => Ok(()),
        }
    }
}
