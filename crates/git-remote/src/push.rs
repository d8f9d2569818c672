//! Writing to a repository: a branch fetched for writing (or still to be created), a commit
//! built from file changes without a checkout, and a push that never overwrites what someone
//! else pushed meanwhile.

use std::path::PathBuf;

use git2::build::TreeUpdateBuilder;
use git2::{FileMode, Oid, PushOptions, Repository, Signature};

use super::auth::Authenticator;
use super::cache::EntryLock;
use super::client::{FetchRequest, GitClient, RefKind};
use super::url::{RepoUrl, Transport};
use super::GitError;

/// A branch to commit on: its head (none while the branch does not exist yet), in a locked
/// cache entry, or in the local repository itself.
#[derive(Debug)]
pub struct Branch {
    pub name: String,
    pub head: Option<Oid>,
    pub url: RepoUrl,
    repo_dir: PathBuf,
    _lock: Option<EntryLock>,
}

impl Branch {
    /// A new handle on the repository (one per thread: libgit2 handles are not shared).
    pub fn open(&self) -> Result<Repository, GitError> {
        Repository::open(&self.repo_dir).map_err(|e| GitError::Read(e.message().to_string()))
    }
}

/// One file to write (`Some` content) or delete (`None`), by its path in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    pub path: String,
    pub content: Option<Vec<u8>>,
}

/// Who a commit is by.
#[derive(Debug, Clone)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl GitClient {
    /// Fetches `request.reference` as a branch to write to. A branch (or a whole repository)
    /// that is still empty is fine: the first push creates it.
    pub fn fetch_branch(&self, request: &FetchRequest<'_>) -> Result<Branch, GitError> {
        let name = request.reference.trim().to_string();
        check_branch_name(&name)?;
        match self.fetch(request) {
            Ok(fetched) if fetched.kind == RefKind::Branch => {
                let (url, repo_dir, head, lock) = fetched.into_parts();
                Ok(Branch {
                    name,
                    head: Some(head),
                    url,
                    repo_dir,
                    _lock: lock,
                })
            }
            Ok(_) => Err(GitError::RefNotFound(format!(
                "{name:?} is a tag or a commit of {}, not a branch; name a branch to commit to",
                request.url
            ))),
            // The server answered (so it let us in) but has no such branch yet.
            Err(GitError::RefNotFound(_)) => {
                let url = RepoUrl::parse(request.url)?;
                if let Some(path) = url.local_path() {
                    return Ok(Branch {
                        name,
                        head: None,
                        url,
                        repo_dir: path,
                        _lock: None,
                    });
                }
                let entry = self.cache().entry(&url);
                let lock = self.cache().lock(&entry)?;
                entry.open_or_init()?;
                entry.mark_complete()?;
                Ok(Branch {
                    name,
                    head: None,
                    url,
                    repo_dir: entry.dir.clone(),
                    _lock: Some(lock),
                })
            }
            Err(error) => Err(error),
        }
    }

    /// Pushes `commit` to the branch `to` of the remote: a fast-forward of `branch` when `to`
    /// is its name, else a new branch. Refused (never forced) when the remote moved meanwhile
    /// or `to` already exists.
    pub fn push(
        &self,
        branch: &Branch,
        commit: Oid,
        to: &str,
        request: &FetchRequest<'_>,
    ) -> Result<(), GitError> {
        check_branch_name(to)?;
        let expected = match to == branch.name {
            true => branch.head,
            false => None,
        };
        let repo = branch.open()?;
        let target = format!("refs/heads/{to}");
        if branch.url.transport == Transport::Local {
            // The repository itself: a compare-and-swap of the ref is the push.
            let moved = |e: git2::Error| {
                GitError::Rejected(format!(
                    "{} moved on {} meanwhile ({}); run again",
                    to,
                    branch.url.masked(),
                    e.message()
                ))
            };
            let message = format!("app sync: push {commit}");
            return match expected {
                Some(old) => repo
                    .reference_matching(&target, commit, true, old, &message)
                    .map(drop)
                    .map_err(moved),
                None => repo
                    .reference(&target, commit, false, &message)
                    .map(drop)
                    .map_err(moved),
            };
        }
        let refused = std::cell::RefCell::new(None::<String>);
        let auth = Authenticator {
            url: &branch.url,
            credentials: request.credentials,
            host_keys: request.host_keys,
            allow_insecure_http: self.settings().allow_insecure_http,
            env: self.settings().env,
            outcome: Default::default(),
        };
        // What the server said on its side band ("remote: pushes are frozen today"), capped.
        let said = std::cell::RefCell::new(String::new());
        let moved = std::cell::RefCell::new(None::<GitError>);
        let mut callbacks = auth.callbacks();
        callbacks.sideband_progress(|data| {
            let mut said = said.borrow_mut();
            if said.len() < MAX_SERVER_MESSAGE {
                said.push_str(&String::from_utf8_lossy(data));
            }
            true
        });
        // A compare-and-swap: the ref must still be where this run read it (or absent for a
        // new branch). A branch rewound by a force-push is not fast-forwarded back.
        callbacks.push_negotiation(|updates| {
            for update in updates {
                let now = Some(update.src()).filter(|oid| !oid.is_zero());
                if now != expected {
                    *moved.borrow_mut() = Some(branch_moved(&repo, branch, to, expected, now));
                    return Err(git2::Error::from_str("the branch moved"));
                }
            }
            Ok(())
        });
        callbacks.push_update_reference(|_, status| {
            if let Some(status) = status {
                *refused.borrow_mut() = Some(status.to_string());
            }
            Ok(())
        });
        super::client::init_network(self.settings().env);
        let mut remote = repo.remote_anonymous(branch.url.fetch_url()).map_err(|e| {
            GitError::InvalidUrl(format!("{}: {}", branch.url.masked(), e.message()))
        })?;
        let mut options = PushOptions::new();
        options.remote_callbacks(callbacks);
        options.follow_redirects(git2::RemoteRedirect::None);
        let pushed = remote.push(&[format!("{commit}:{target}")], Some(&mut options));
        drop(options);
        let said = server_said(&said.into_inner());
        if let Err(error) = pushed {
            if let Some(recorded) = auth.outcome.borrow_mut().error.take() {
                return Err(recorded);
            }
            if let Some(moved) = moved.into_inner() {
                return Err(moved);
            }
            let rejected = matches!(
                error.code(),
                git2::ErrorCode::NotFastForward | git2::ErrorCode::Exists
            ) || error.message().contains("not present locally")
                || error.message().contains("fastforward");
            return Err(match rejected {
                true => GitError::Rejected(format!(
                    "{to} of {} has commits this run has not seen; run again{said}",
                    branch.url.masked()
                )),
                false => GitError::from_remote(&error, &branch.url.masked()),
            });
        }
        match refused.into_inner() {
            Some(status) => Err(GitError::Rejected(format!(
                "{} refused {to}: {status}{said}",
                branch.url.masked()
            ))),
            None => Ok(()),
        }
    }
}

/// At most this much of what a server says while refusing a push is repeated.
const MAX_SERVER_MESSAGE: usize = 2048;

/// The server's own words (its `remote:` lines), as a suffix: ` (the server said: …)`.
fn server_said(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .flat_map(|line| line.split('\r'))
        .map(|line| line.trim_start_matches("remote:").trim())
        .filter(|line| !line.is_empty())
        .map(|line| line.chars().filter(|c| !c.is_control()).collect())
        .collect();
    match lines.is_empty() {
        true => String::new(),
        false => {
            let joined: String = lines.join(" / ").chars().take(400).collect();
            format!(" (the server said: {joined})")
        }
    }
}

/// Why a push stopped before sending anything: `to` is no longer where this run read it.
fn branch_moved(
    repo: &Repository,
    branch: &Branch,
    to: &str,
    expected: Option<Oid>,
    now: Option<Oid>,
) -> GitError {
    let short = |oid: Option<Oid>| match oid {
        Some(oid) => oid.to_string()[..12].to_string(),
        None => "nothing".to_string(),
    };
    let rewound = match (expected, now) {
        (Some(expected), Some(now)) => {
            repo.find_commit(now).is_ok()
                && repo.graph_descendant_of(expected, now).unwrap_or(false)
        }
        _ => false,
    };
    let what = match (expected, rewound) {
        (None, _) => format!("{to} exists now on {}", branch.url.masked()),
        (Some(_), true) => format!(
            "{to} on {} was rewound (force-pushed) to {}, an older commit, and no longer contains {}, the commit this run started from",
            branch.url.masked(),
            short(now),
            short(expected)
        ),
        (Some(_), false) => format!(
            "{to} on {} is at {} now, not at {}, the commit this run started from: it moved on, or \
             was rewritten (force-pushed), and a push now could bring back what that dropped",
            branch.url.masked(),
            short(now),
            short(expected)
        ),
    };
    GitError::Rejected(format!(
        "{what}; nothing was pushed. Run again to start from the branch as it is now"
    ))
}

/// A commit of `changes` on top of `parent` (or a first commit); `None` when the changes
/// leave the tree as it was (no empty commits).
pub fn write_commit(
    repo: &Repository,
    parent: Option<Oid>,
    changes: &[FileChange],
    message: &str,
    author: &Author,
) -> Result<Option<Oid>, GitError> {
    let write = |e: git2::Error| GitError::Write(e.message().to_string());
    let parent = parent
        .map(|oid| repo.find_commit(oid))
        .transpose()
        .map_err(write)?;
    let base = match &parent {
        Some(commit) => commit.tree().map_err(write)?,
        None => {
            let empty = repo
                .treebuilder(None)
                .and_then(|b| b.write())
                .map_err(write)?;
            repo.find_tree(empty).map_err(write)?
        }
    };
    // One update per path (the last change wins); deleting what is not there is nothing.
    let mut last: std::collections::BTreeMap<&str, Option<&[u8]>> = Default::default();
    for change in changes {
        last.insert(change.path.as_str(), change.content.as_deref());
    }
    let mut update = TreeUpdateBuilder::new();
    for (path, content) in last {
        match content {
            Some(bytes) => {
                let blob = repo.blob(bytes).map_err(write)?;
                update.upsert(path, blob, FileMode::Blob);
            }
            None if base.get_path(std::path::Path::new(path)).is_ok() => {
                update.remove(path);
            }
            None => {}
        }
    }
    let tree = update.create_updated(repo, &base).map_err(write)?;
    if tree == base.id() {
        return Ok(None);
    }
    let tree = repo.find_tree(tree).map_err(write)?;
    let signature = Signature::now(&author.name, &author.email).map_err(write)?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(None, &signature, &signature, message, &tree, &parents)
        .map(Some)
        .map_err(write)
}

/// The content of `path` at `commit`, if it is a file there.
pub fn read_file(repo: &Repository, commit: Oid, path: &str) -> Result<Option<Vec<u8>>, GitError> {
    let read = |e: git2::Error| GitError::Read(e.message().to_string());
    let tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(read)?;
    let entry = match tree.get_path(std::path::Path::new(path)) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
    };
    match entry.to_object(repo).map_err(read)?.into_blob() {
        Ok(blob) => Ok(Some(blob.content().to_vec())),
        Err(_) => Ok(None),
    }
}

/// A ref name git accepts for a branch, checked before it reaches a remote.
fn check_branch_name(name: &str) -> Result<(), GitError> {
    let valid = !name.is_empty()
        && git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
        && !name.starts_with('-');
    match valid {
        true => Ok(()),
        false => Err(GitError::NotAllowed(format!(
            "{name:?} is not a valid branch name"
        ))),
    }
}

/// A commit that changed a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathCommit {
    pub id: Oid,
    /// Seconds since the epoch (committer time).
    pub time: i64,
    pub author: String,
    pub summary: String,
}

/// Most commits a history walk looks at (a hostile or huge history stays bounded).
const MAX_WALK: usize = 20_000;

/// The commits reachable from `head` that changed `path` (its blob differs from the first
/// parent's), newest first; at most `max` of them.
pub fn file_history(
    repo: &Repository,
    head: Oid,
    path: &str,
    max: usize,
) -> Result<Vec<PathCommit>, GitError> {
    let read = |e: git2::Error| GitError::Read(e.message().to_string());
    let blob_at = |commit: &git2::Commit| -> Option<Oid> {
        commit
            .tree()
            .ok()?
            .get_path(std::path::Path::new(path))
            .ok()
            .map(|entry| entry.id())
    };
    let mut walk = repo.revwalk().map_err(read)?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
        .map_err(read)?;
    walk.push(head).map_err(read)?;
    let mut found = Vec::new();
    for oid in walk.take(MAX_WALK) {
        let Ok(commit) = oid.and_then(|oid| repo.find_commit(oid)) else {
            // A shallow clone ends where its history was cut.
            break;
        };
        let here = blob_at(&commit);
        let before = commit.parent(0).ok().and_then(|parent| blob_at(&parent));
        if here != before {
            found.push(PathCommit {
                id: commit.id(),
                time: commit.time().seconds(),
                author: commit.author().name().unwrap_or_default().to_string(),
                summary: commit.summary().unwrap_or_default().to_string(),
            });
            if found.len() >= max {
                break;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn author() -> Author {
        Author {
            name: "Test".into(),
            email: "test@example.com".into(),
        }
    }

    fn change(path: &str, content: Option<&str>) -> FileChange {
        FileChange {
            path: path.into(),
            content: content.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn commits_build_on_each_other_and_history_follows_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        assert_eq!(
            write_commit(&repo, None, &[], "nothing", &author()).unwrap(),
            None
        );
        let first = write_commit(
            &repo,
            None,
            &[
                change("apps/a.yml", Some("a1")),
                change("apps/b.yml", Some("b1")),
            ],
            "first",
            &author(),
        )
        .unwrap()
        .unwrap();
        let same = [change("apps/a.yml", Some("a1"))];
        assert_eq!(
            write_commit(&repo, Some(first), &same, "same", &author()).unwrap(),
            None
        );
        let second = write_commit(
            &repo,
            Some(first),
            &[change("apps/a.yml", Some("a2"))],
            "a",
            &author(),
        )
        .unwrap()
        .unwrap();
        let third = write_commit(
            &repo,
            Some(second),
            &[change("apps/b.yml", None)],
            "b gone",
            &author(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            read_file(&repo, third, "apps/a.yml").unwrap(),
            Some(b"a2".to_vec())
        );
        assert_eq!(read_file(&repo, third, "apps/b.yml").unwrap(), None);
        assert_eq!(
            read_file(&repo, first, "apps/b.yml").unwrap(),
            Some(b"b1".to_vec())
        );
        let history: Vec<String> = file_history(&repo, third, "apps/a.yml", 10)
            .unwrap()
            .into_iter()
            .map(|c| c.summary)
            .collect();
        assert_eq!(history, ["a", "first"]);
        assert_eq!(
            file_history(&repo, third, "apps/a.yml", 1).unwrap().len(),
            1
        );
    }

    proptest! {
        /// Whatever sequence of writes and deletes, each file reads back as last written.
        #[test]
        fn files_read_back_as_last_written(steps in prop::collection::vec(
            prop::collection::vec((0usize..4, prop::option::of("[a-z]{0,6}")), 1..4), 1..6)) {
            let dir = tempfile::tempdir().unwrap();
            let repo = Repository::init_bare(dir.path()).unwrap();
            let paths = ["a.yml", "apps/b.yml", "apps/c.yml", "x/y/z.yml"];
            let mut model: BTreeMap<&str, String> = BTreeMap::new();
            let mut head = None;
            for step in &steps {
                let changes: Vec<FileChange> = step
                    .iter()
                    .map(|(i, content)| change(paths[*i], content.as_deref()))
                    .collect();
                let before = model.clone();
                for (i, content) in step {
                    match content {
                        Some(c) => model.insert(paths[*i], c.clone()),
                        None => model.remove(paths[*i]),
                    };
                }
                match write_commit(&repo, head, &changes, "step", &author()).unwrap() {
                    Some(commit) => head = Some(commit),
                    None => prop_assert_eq!(&before, &model),
                }
                for path in paths {
                    let read = head.map(|h| read_file(&repo, h, path).unwrap()).unwrap_or(None);
                    prop_assert_eq!(read, model.get(path).map(|c| c.as_bytes().to_vec()));
                }
            }
        }
    }
}
