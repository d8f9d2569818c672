//! The three-way base of every app: the commit and the normalized hashes (Dify's side and
//! Git's side) of the last sync, per repository, branch and directory. Kept in plugin storage
//! by the plugin and in a file by the command line; never holds a secret. It changes only
//! after a push or an import succeeded, so a failure leaves it where it was.

use std::collections::BTreeMap;
use std::path::PathBuf;

use dify_plugin::protocol::storage::Storage;
use serde::{Deserialize, Serialize};

/// The last synced version of one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppBase {
    /// The commit that held this version.
    pub commit: String,
    /// Its file in the repository.
    pub path: String,
    /// The normalized hash of Dify's export at that point.
    pub dify_hash: String,
    /// The normalized hash of the file in Git at that point.
    pub git_hash: String,
}

/// A conflict branch pushed for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictBranch {
    pub branch: String,
    /// Its commit: once the branch is merged, Git has seen Dify's version.
    pub commit: String,
    pub dify_hash: String,
}

/// An app file imported as a new app (Dify could not overwrite its app, or had none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApp {
    pub app_id: String,
    /// The normalized hash of the file that was imported.
    pub git_hash: String,
}

/// Everything remembered about one repository target.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// By app id.
    #[serde(default)]
    pub apps: BTreeMap<String, AppBase>,
    /// The conflict branch already pushed for an app, and the hash of Dify's version on it,
    /// so a conflict that persists is reported again without a new branch every run.
    #[serde(default)]
    pub conflicts: BTreeMap<String, ConflictBranch>,
    /// Files imported as new apps, by path, so the same version never makes a second one.
    #[serde(default)]
    pub created: BTreeMap<String, CreatedApp>,
    /// SSH host keys trusted on first use, by host (without `ssh_known_hosts`).
    #[serde(default)]
    pub host_keys: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the sync state cannot be read: {0}")]
    Read(String),
    #[error("the sync state cannot be saved: {0}")]
    Write(String),
}

/// Where the state lives.
pub enum StateStore {
    /// Dify's plugin storage (the plugin).
    Plugin(Storage),
    /// A directory of JSON files (the command line).
    Files(PathBuf),
}

impl StateStore {
    fn key(target: &str) -> String {
        format!("app-sync/state/{target}")
    }

    pub async fn load(&self, target: &str) -> Result<SyncState, StateError> {
        let bytes = match self {
            StateStore::Plugin(storage) => storage
                .get(&Self::key(target))
                .await
                .map_err(|e| StateError::Read(e.to_string()))?,
            StateStore::Files(dir) => match std::fs::read(dir.join(format!("{target}.json"))) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(StateError::Read(e.to_string())),
            },
        };
        match bytes {
            None => Ok(SyncState::default()),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                StateError::Read(format!("it is not the format this plugin writes ({e})"))
            }),
        }
    }

    pub async fn save(&self, target: &str, state: &SyncState) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(state).map_err(|e| StateError::Write(e.to_string()))?;
        match self {
            StateStore::Plugin(storage) => storage
                .set(&Self::key(target), &bytes)
                .await
                .map_err(|e| StateError::Write(e.to_string())),
            StateStore::Files(dir) => {
                let write =
                    |e: std::io::Error| StateError::Write(format!("{}: {e}", dir.display()));
                std::fs::create_dir_all(dir).map_err(write)?;
                let path = dir.join(format!("{target}.json"));
                let partial = path.with_extension("partial");
                std::fs::write(&partial, &bytes).map_err(write)?;
                std::fs::rename(&partial, &path).map_err(write)
            }
        }
    }
}

impl SyncState {
    /// This state and `other`, both records of the same target (the tools' and the push
    /// webhook's): for each app the base of the later sync, `later(a, b)` saying whether
    /// commit `b` came after commit `a`; the conflict branch and created app that go with
    /// it; every trusted host key.
    pub fn merge(mut self, other: SyncState, later: impl Fn(&str, &str) -> bool) -> SyncState {
        for (app, base) in other.apps {
            let theirs = match self.apps.get(&app) {
                None => true,
                Some(ours) => ours.commit != base.commit && later(&ours.commit, &base.commit),
            };
            if theirs {
                self.apps.insert(app.clone(), base);
                match other.conflicts.get(&app) {
                    Some(conflict) => self.conflicts.insert(app, conflict.clone()),
                    None => self.conflicts.remove(&app),
                };
            }
        }
        for (app, conflict) in other.conflicts {
            self.conflicts.entry(app).or_insert(conflict);
        }
        for (path, created) in other.created {
            self.created.entry(path).or_insert(created);
        }
        for (host, key) in other.host_keys {
            self.host_keys.entry(host).or_insert(key);
        }
        self
    }
}
