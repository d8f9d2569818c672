//! The Git side of a sync: the branch fetched for writing (full history, for `app_history`),
//! the index of app files, reads at any commit, and commits pushed to the branch or to a
//! conflict branch. Git work is blocking; it runs on the runtime's blocking-capable threads.

use std::collections::BTreeMap;
use std::sync::Arc;

use git_remote::push::{read_file, write_commit};
use git_remote::{Author, Branch, FetchRequest, FileChange, GitClient, GitCredentials};
use git_remote::{GitError, HostKeyStore, MemoryHostKeys};
use serde::{Deserialize, Serialize};

use crate::dsl;
use crate::environment::{self, Environment};

/// The index of app files, under the sync directory.
pub const INDEX_FILE: &str = ".dify-sync/index.json";

/// What the index says of one app file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub app_id: String,
    pub mode: String,
    pub name: String,
}

/// App files by path.
pub type Index = BTreeMap<String, IndexEntry>;

/// The id an environment's view gives a file none of its apps is mapped to yet (never an id
/// of Dify's, so the app is only in Git there).
const UNMAPPED: &str = "unmapped:";

/// A commit that touched a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCommit {
    pub commit: String,
    pub time: i64,
    pub author: String,
    pub summary: String,
}

/// An app file the index may name: `<apps_dir><name>.yml`, one level, nothing odd in it.
fn is_app_file(path: &str, apps_dir: &str) -> bool {
    path.strip_prefix(apps_dir).is_some_and(|name| {
        name.ends_with(".yml")
            && name.len() <= 128
            && !name.contains('/')
            && !name.starts_with('.')
            && !name.chars().any(char::is_control)
    })
}

/// The branch of the sync target, fetched and locked for this run.
pub struct AppRepository {
    client: Arc<GitClient>,
    url: String,
    directory: String,
    credentials: GitCredentials,
    host_keys: MemoryHostKeys,
    branch: Branch,
    index: Index,
    /// The environment whose view this is ([`AppRepository::for_environment`]), and the
    /// shared index as read.
    environment: Option<(String, Index)>,
    /// Apps the environment's file maps to files (`apps`), not yet in its index.
    adopted: Vec<String>,
}

impl AppRepository {
    /// Fetches the branch (an empty one is fine) and reads its index. `known_hosts` seeds the
    /// SSH host keys trusted on first use before.
    pub fn open(
        client: Arc<GitClient>,
        url: &str,
        branch: &str,
        directory: &str,
        credentials: &GitCredentials,
        known_hosts: &BTreeMap<String, String>,
    ) -> Result<AppRepository, GitError> {
        let host_keys = MemoryHostKeys::default();
        for (host, key) in known_hosts {
            host_keys.record(host, key);
        }
        let branch = client.fetch_branch(&FetchRequest {
            url,
            reference: branch,
            credentials,
            host_keys: &host_keys,
            deadline: None,
            progress: None,
        })?;
        let mut repository = AppRepository {
            client,
            url: url.to_string(),
            directory: directory.to_string(),
            credentials: credentials.clone(),
            host_keys,
            branch,
            index: Index::new(),
            environment: None,
            adopted: Vec::new(),
        };
        repository.index = repository.read_index(&repository.index_path())?;
        Ok(repository)
    }

    /// An index file (none: empty), every path in it an app file of the directory.
    fn read_index(&self, index_path: &str) -> Result<Index, GitError> {
        let unreadable = |why: String| {
            GitError::Read(format!(
                "{index_path} is not an index this plugin wrote ({why}); fix or delete it"
            ))
        };
        let index: Index = match self.read(index_path)? {
            None => Index::new(),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?,
        };
        let apps_dir = dsl::join(&self.directory, "apps/");
        if let Some(path) = index.keys().find(|path| !is_app_file(path, &apps_dir)) {
            let shown: String = path.chars().take(80).collect();
            return Err(unreadable(format!(
                "{shown:?} is not a file under {apps_dir}"
            )));
        }
        Ok(index)
    }

    /// The repository as environment `name` sees it: its file, read, and the app files of
    /// the shared index, each with the id of its app in that environment's Dify (from the
    /// environment's own index, or the file's `apps` section), or none yet. Index writes go
    /// to the environment's index from then on.
    pub fn for_environment(mut self, name: &str) -> Result<(AppRepository, Environment), GitError> {
        let file = environment::file_path(&self.directory, name);
        let Some(text) = self.read(&file)? else {
            return Err(GitError::Read(format!(
                "the branch {} has no {file}, which defines the environment {name}; commit it (it may be empty) and run again",
                self.branch.name
            )));
        };
        let environment =
            Environment::parse(name, &String::from_utf8_lossy(&text)).map_err(GitError::Read)?;
        let own = self.read_index(&environment::index_path(&self.directory, name))?;
        let shared = self.index.clone();
        self.index = std::mem::take(&mut self.index)
            .into_iter()
            .map(|(path, entry)| {
                let file_name = path.rsplit('/').next().unwrap_or_default();
                let adopted = environment.apps.get(file_name).cloned();
                let app_id = match (own.get(&path), adopted) {
                    (Some(entry), _) => entry.app_id.clone(),
                    (None, Some(id)) => {
                        self.adopted.push(id.clone());
                        id
                    }
                    (None, None) => format!("{UNMAPPED}{path}"),
                };
                (path, IndexEntry { app_id, ..entry })
            })
            .collect();
        self.environment = Some((name.to_string(), shared));
        Ok((self, environment))
    }

    /// Whether this is an environment's view.
    pub fn in_environment(&self) -> bool {
        self.environment.is_some()
    }

    /// Whether the environment's file maps a file to `app_id`, an app its Dify already had.
    pub fn adopts(&self, app_id: &str) -> bool {
        self.adopted.iter().any(|id| id == app_id)
    }

    /// Whether `app_id` stands for a file no app of the environment is mapped to yet.
    pub fn is_unmapped(app_id: &str) -> bool {
        app_id.starts_with(UNMAPPED)
    }

    /// The shared index file.
    pub fn index_path(&self) -> String {
        dsl::join(&self.directory, INDEX_FILE)
    }

    /// The index files that keep `index` (this view's index with a run's changes): the
    /// shared one; in an environment, its own (the files mapped to its apps) and the shared
    /// one for the files it adds.
    pub fn index_changes(&self, index: &Index) -> Vec<FileChange> {
        let file = |path: String, index: &Index| FileChange {
            path,
            content: Some(serde_json::to_vec_pretty(index).expect("the index serializes")),
        };
        let Some((name, shared)) = &self.environment else {
            return vec![file(self.index_path(), index)];
        };
        let own: Index = index
            .iter()
            .filter(|(_, entry)| !Self::is_unmapped(&entry.app_id))
            .map(|(path, entry)| (path.clone(), entry.clone()))
            .collect();
        let mut changes = vec![file(environment::index_path(&self.directory, name), &own)];
        let added: Vec<(&String, &IndexEntry)> = own
            .iter()
            .filter(|(path, _)| !shared.contains_key(*path))
            .collect();
        if !added.is_empty() {
            let mut grown = shared.clone();
            grown.extend(added.into_iter().map(|(p, e)| (p.clone(), e.clone())));
            changes.push(file(self.index_path(), &grown));
        }
        changes
    }

    pub fn directory(&self) -> &str {
        &self.directory
    }

    pub fn branch_name(&self) -> &str {
        &self.branch.name
    }

    /// The branch's head commit; `None` while the branch is empty.
    pub fn head(&self) -> Option<String> {
        self.branch.head.map(|oid| oid.to_string())
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The file of an app, by its id.
    pub fn path_of(&self, app_id: &str) -> Option<&str> {
        self.index
            .iter()
            .find(|(_, entry)| entry.app_id == app_id)
            .map(|(path, _)| path.as_str())
    }

    /// The SSH host keys now trusted (to remember them).
    pub fn host_keys(&self, into: &mut BTreeMap<String, String>) {
        let host = self.branch.url.known_hosts_name();
        if let Some(key) = self.host_keys.recorded(&host) {
            into.insert(host, key);
        }
    }

    /// A file at the head (`None`: absent, or the branch is empty).
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        match self.branch.head {
            None => Ok(None),
            Some(head) => read_file(&self.branch.open()?, head, path),
        }
    }

    /// A file at any commit of the branch's history (a full id, or a prefix of one).
    pub fn read_at(&self, commit: &str, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let plain = commit.len() <= 64 && commit.chars().all(|c| c.is_ascii_hexdigit());
        if !plain {
            let shown: String = commit.chars().take(40).collect();
            return Err(GitError::RefNotFound(format!(
                "{shown:?} is not a commit id; give the id (or its first characters) of a commit of the branch"
            )));
        }
        let repo = self.branch.open()?;
        let oid = repo
            .revparse_single(commit)
            .and_then(|object| object.peel_to_commit())
            .map_err(|_| {
                GitError::RefNotFound(format!("{commit:?} is not a commit of {}", self.url))
            })?
            .id();
        read_file(&repo, oid, path)
    }

    /// Commits `changes` on the head and pushes them to the branch; `None` when they change
    /// nothing. The push is refused if the branch moved meanwhile.
    pub fn commit_and_push(
        &self,
        changes: &[FileChange],
        message: &str,
        author: &Author,
    ) -> Result<Option<String>, GitError> {
        let repo = self.branch.open()?;
        let Some(commit) = write_commit(&repo, self.branch.head, changes, message, author)? else {
            return Ok(None);
        };
        self.push(commit, &self.branch.name)?;
        Ok(Some(commit.to_string()))
    }

    /// Commits `changes` on the head and pushes them to a new branch `name`.
    pub fn push_branch(
        &self,
        name: &str,
        changes: &[FileChange],
        message: &str,
        author: &Author,
    ) -> Result<String, GitError> {
        let repo = self.branch.open()?;
        let commit = write_commit(&repo, self.branch.head, changes, message, author)?
            .or(self.branch.head)
            .ok_or_else(|| GitError::Write("nothing to commit on an empty branch".into()))?;
        self.push(commit, name)?;
        Ok(commit.to_string())
    }

    fn push(&self, commit: git2::Oid, to: &str) -> Result<(), GitError> {
        self.client.push(
            &self.branch,
            commit,
            to,
            &FetchRequest {
                url: &self.url,
                reference: to,
                credentials: &self.credentials,
                host_keys: &self.host_keys,
                deadline: None,
                progress: None,
            },
        )
    }

    /// Whether `commit` is in the branch's history (merged into it, or its head).
    pub fn has_merged(&self, commit: &str) -> bool {
        let (Some(head), Ok(commit)) = (self.branch.head, git2::Oid::from_str(commit)) else {
            return false;
        };
        head == commit
            || self
                .branch
                .open()
                .and_then(|repo| {
                    repo.graph_descendant_of(head, commit)
                        .map_err(|e| GitError::Read(e.message().to_string()))
                })
                .unwrap_or(false)
    }

    /// Whether commit `later` came after commit `earlier` on this branch (descends from it).
    pub fn descends(&self, later: &str, earlier: &str) -> bool {
        let (Ok(later), Ok(earlier)) = (git2::Oid::from_str(later), git2::Oid::from_str(earlier))
        else {
            return false;
        };
        self.branch
            .open()
            .ok()
            .and_then(|repo| repo.graph_descendant_of(later, earlier).ok())
            .unwrap_or(false)
    }

    /// The commits of the branch that changed `path`, newest first, at most `max`.
    pub fn history(&self, path: &str, max: usize) -> Result<Vec<FileCommit>, GitError> {
        let Some(head) = self.branch.head else {
            return Ok(Vec::new());
        };
        let commits = git_remote::push::file_history(&self.branch.open()?, head, path, max)?;
        Ok(commits
            .into_iter()
            .map(|c| FileCommit {
                commit: c.id.to_string(),
                time: c.time,
                author: c.author,
                summary: c.summary,
            })
            .collect())
    }
}
