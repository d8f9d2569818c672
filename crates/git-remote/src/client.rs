//! Bringing a cached bare clone up to date with one ref, shallow, and resolving the ref to a
//! commit. Retries transient failures; a damaged cache entry is cloned again.

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use git2::{AutotagOption, FetchOptions, Oid, Repository};

use super::auth::{Authenticator, HostKeyStore};
use super::cache::{EntryLock, RepoCache};
use super::url::{RepoUrl, Transport};
use super::GitError;
use crate::credentials::GitCredentials;
use crate::EnvVars;

/// How fetching behaves; `from_env` reads the operator's settings.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// History depth to fetch; 0 fetches everything.
    pub depth: i32,
    pub allow_local: bool,
    pub allow_insecure_http: bool,
    pub attempts: u32,
    pub retry_delay: Duration,
    /// Where these came from, for messages that name the variable to set.
    pub env: EnvVars,
}

impl FetchSettings {
    /// `<PREFIX>_FETCH_DEPTH` (1), `<PREFIX>_ALLOW_LOCAL`, `<PREFIX>_ALLOW_INSECURE_HTTP`.
    pub fn from_env(env: EnvVars) -> Self {
        FetchSettings {
            depth: env.number("FETCH_DEPTH").unwrap_or(1),
            allow_local: env.flag("ALLOW_LOCAL"),
            allow_insecure_http: env.flag("ALLOW_INSECURE_HTTP"),
            attempts: 3,
            retry_delay: Duration::from_secs(1),
            env,
        }
    }
}

/// What a fetch is for.
pub struct FetchRequest<'a> {
    pub url: &'a str,
    /// A branch, a tag or a full commit id.
    pub reference: &'a str,
    pub credentials: &'a GitCredentials,
    pub host_keys: &'a dyn HostKeyStore,
    /// Give up (with a timeout error) once this passes.
    pub deadline: Option<Instant>,
    /// Called as objects arrive: (received objects, total objects, received bytes).
    pub progress: Option<&'a (dyn Fn(usize, usize, usize) + Sync)>,
}

/// What the ref named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefKind {
    Branch,
    Tag,
    Commit,
}

/// A fetched commit in the cache. The cache entry stays locked while this lives.
#[derive(Debug)]
pub struct Fetched {
    pub url: RepoUrl,
    pub repo_dir: PathBuf,
    pub commit: Oid,
    pub kind: RefKind,
    /// Held for a cached clone; a local repository is read in place.
    _lock: Option<EntryLock>,
}

impl Fetched {
    /// A new handle on the repository (one per thread: libgit2 handles are not shared).
    pub fn open(&self) -> Result<Repository, GitError> {
        Repository::open_bare(&self.repo_dir).map_err(|e| GitError::Read(e.message().to_string()))
    }

    /// Its URL, repository, commit and lock, taken apart.
    pub(crate) fn into_parts(self) -> (RepoUrl, PathBuf, Oid, Option<EntryLock>) {
        (self.url, self.repo_dir, self.commit, self._lock)
    }

    /// Where this commit lives, to read it again after this handle (and its lock) is gone.
    pub fn place(&self) -> RepoPlace {
        RepoPlace {
            url: self.url.clone(),
            repo_dir: self.repo_dir.clone(),
            commit: self.commit,
            kind: self.kind.clone(),
            cached: self._lock.is_some(),
        }
    }
}

/// A fetched commit without its lock: [`GitClient::reopen`] takes it again.
#[derive(Debug, Clone)]
pub struct RepoPlace {
    url: RepoUrl,
    repo_dir: PathBuf,
    commit: Oid,
    kind: RefKind,
    cached: bool,
}

impl RepoPlace {
    pub fn url(&self) -> &RepoUrl {
        &self.url
    }

    pub fn commit(&self) -> Oid {
        self.commit
    }
}

pub struct GitClient {
    cache: RepoCache,
    settings: FetchSettings,
}

impl GitClient {
    pub fn new(cache: RepoCache, settings: FetchSettings) -> Self {
        GitClient { cache, settings }
    }

    pub fn settings(&self) -> &FetchSettings {
        &self.settings
    }

    pub fn cache(&self) -> &RepoCache {
        &self.cache
    }

    pub fn fetch(&self, request: &FetchRequest<'_>) -> Result<Fetched, GitError> {
        let url = self.allowed_url(request.url)?;
        let reference = request.reference.trim();
        let reference = if reference.is_empty() {
            "main"
        } else {
            reference
        };
        if let Some(path) = url.local_path() {
            return open_local(url, &path, reference);
        }
        let entry = self.cache.entry(&url);
        let lock = self.cache.lock(&entry)?;
        let was_complete = entry.is_complete();
        let fetched = self.fetch_into(&entry, &url, reference, request);
        if fetched.is_err() && !was_complete {
            // A URL that never fetched (not found, refused) leaves no entry and no lock file.
            if let Err(error) = entry.remove() {
                tracing::warn!("cannot remove a failed cache entry: {error}");
            }
        }
        let (commit, kind) = fetched?;
        entry.mark_complete()?;
        self.cache.evict(&entry);
        Ok(Fetched {
            url,
            repo_dir: entry.dir.clone(),
            commit,
            kind,
            _lock: Some(lock),
        })
    }

    /// Where `commit` of `url` is held if an earlier fetch brought it, without fetching or
    /// asking the server anything: [`GitClient::reopen`] says whether it still is. Only for a
    /// caller that has proof the same credentials were authorized for this commit.
    pub fn place_of(&self, url: &str, commit: Oid) -> Result<RepoPlace, GitError> {
        let url = self.allowed_url(url)?;
        let (repo_dir, cached) = match url.local_path() {
            Some(path) => {
                let repo = Repository::open(&path).map_err(|_| {
                    GitError::RepoNotFound(format!("{}: not a Git repository", path.display()))
                })?;
                (repo.path().to_path_buf(), false)
            }
            None => (self.cache.entry(&url).dir, true),
        };
        Ok(RepoPlace {
            url,
            repo_dir,
            commit,
            kind: RefKind::Commit,
            cached,
        })
    }

    /// `url` parsed, refused when it is a local path the settings do not allow.
    fn allowed_url(&self, url: &str) -> Result<RepoUrl, GitError> {
        let url = RepoUrl::parse(url)?;
        if url.transport == Transport::Local && !self.settings.allow_local {
            return Err(GitError::NotAllowed(format!(
                "{}: local paths and file:// URLs are refused (they would expose the plugin host's disk); \
                 use a remote URL, or have the operator set {}=1",
                url.masked(),
                self.settings.env.name("ALLOW_LOCAL")
            )));
        }
        Ok(url)
    }

    /// Takes a fetched commit again, without fetching: its cache entry stays locked while the
    /// result lives, so hold it only for a short read (a crawl of the same repository waits
    /// for it). Fails when the entry was evicted or cloned again without the commit.
    pub fn reopen(&self, place: &RepoPlace) -> Result<Fetched, GitError> {
        let lock = match place.cached {
            false => None,
            true => {
                let entry = self.cache.entry(&place.url);
                let gone = || {
                    GitError::Cache(format!(
                        "{}: the cached clone no longer holds commit {}",
                        place.url.masked(),
                        place.commit
                    ))
                };
                if entry.dir != place.repo_dir || !entry.is_complete() {
                    return Err(gone());
                }
                let lock = self.cache.lock(&entry)?;
                let held = entry.is_complete()
                    && Repository::open_bare(&entry.dir)
                        .is_ok_and(|repo| repo.find_commit(place.commit).is_ok());
                if !held {
                    return Err(gone());
                }
                Some(lock)
            }
        };
        Ok(Fetched {
            url: place.url.clone(),
            repo_dir: place.repo_dir.clone(),
            commit: place.commit,
            kind: place.kind.clone(),
            _lock: lock,
        })
    }

    /// Fetches `reference` into the locked `entry`, retrying transient failures and cloning
    /// a damaged entry again.
    fn fetch_into(
        &self,
        entry: &super::cache::CacheEntry,
        url: &RepoUrl,
        reference: &str,
        request: &FetchRequest<'_>,
    ) -> Result<(Oid, RefKind), GitError> {
        let mut attempt = 1;
        let mut recloned = false;
        loop {
            let repo = entry.open_or_init()?;
            match self.fetch_once(&repo, url, reference, request) {
                Ok(found) => return Ok(found),
                Err(FetchFailure::Damaged(why)) if !recloned => {
                    tracing::warn!("{}: {why}; cloning again", url.masked());
                    entry.reset()?;
                    recloned = true;
                }
                Err(FetchFailure::Damaged(why)) => return Err(GitError::Cache(why)),
                Err(FetchFailure::Git(error))
                    if error.is_transient() && attempt < self.settings.attempts =>
                {
                    let pause = self.settings.retry_delay * 2u32.pow(attempt - 1);
                    tracing::warn!("{error}; trying again in {pause:?}");
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                Err(FetchFailure::Git(error)) => return Err(error),
            }
        }
    }

    /// Brings one more commit (by id) into an entry already held by `fetched`; `None` when
    /// the server does not have it or will not serve it by id.
    pub fn fetch_commit(
        &self,
        fetched: &Fetched,
        commit: &str,
        request: &FetchRequest<'_>,
    ) -> Option<Oid> {
        let repo = fetched.open().ok()?;
        self.fetch_once(&repo, &fetched.url, commit, request)
            .ok()
            .map(|(oid, _)| oid)
    }

    fn fetch_once(
        &self,
        repo: &Repository,
        url: &RepoUrl,
        reference: &str,
        request: &FetchRequest<'_>,
    ) -> Result<(Oid, RefKind), FetchFailure> {
        init_network(self.settings.env);
        let as_commit = Oid::from_str(reference)
            .ok()
            .filter(|_| is_full_hex(reference));
        let cached_commit = as_commit.filter(|oid| repo.find_commit(*oid).is_ok());
        let auth = Authenticator {
            url,
            credentials: request.credentials,
            host_keys: request.host_keys,
            allow_insecure_http: self.settings.allow_insecure_http,
            env: self.settings.env,
            outcome: Default::default(),
        };
        let deadline = request.deadline;
        let progress = request.progress;
        let mut callbacks = auth.callbacks();
        callbacks.transfer_progress(move |stats| {
            if let Some(report) = progress {
                report(
                    stats.received_objects(),
                    stats.total_objects(),
                    stats.received_bytes(),
                );
            }
            deadline.is_none_or(|d| Instant::now() < d)
        });
        let mut remote = repo.remote_anonymous(url.fetch_url()).map_err(|e| {
            FetchFailure::Git(GitError::InvalidUrl(format!(
                "{}: {}",
                url.masked(),
                e.message()
            )))
        })?;
        let failure = |error: git2::Error| {
            let recorded = auth.outcome.borrow_mut().error.take();
            if let Some(recorded) = recorded {
                return FetchFailure::Git(recorded);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return FetchFailure::Git(GitError::Timeout(format!(
                    "fetching {} did not finish within the run's time budget",
                    url.masked()
                )));
            }
            let refused_want = ["want", "not our ref", "unexpected packet"]
                .iter()
                .any(|text| error.message().contains(text));
            if as_commit.is_some() && refused_want {
                return FetchFailure::Git(not_fetchable_commit(url, reference));
            }
            if matches!(
                error.class(),
                git2::ErrorClass::Odb
                    | git2::ErrorClass::Zlib
                    | git2::ErrorClass::Indexer
                    | git2::ErrorClass::Repository
            ) {
                return FetchFailure::Damaged(error.message().to_string());
            }
            FetchFailure::Git(GitError::from_remote(&error, &url.masked()))
        };
        // The ref advertisement follows redirects as the fetch does, within the host only
        // (`connect` reads the policy from the repository's configuration).
        refuse_redirects(repo).map_err(failure)?;
        // One connection for the whole fetch: its ref advertisement says where the branch
        // is, and the fetch reuses it.
        let mut connection = remote
            .connect_auth(git2::Direction::Fetch, Some(auth.callbacks()), None)
            .map_err(failure)?;
        let heads: Vec<(String, Oid)> = connection
            .list()
            .map_err(failure)?
            .iter()
            .map(|h| (h.name().to_string(), h.oid()))
            .collect();
        if let Some(oid) = cached_commit {
            // The commit is in the shared cache already, perhaps fetched by another
            // workspace: the caller has just proved, with their own credentials, that the
            // server lets them read this repository before anything cached is used.
            return Ok((oid, RefKind::Commit));
        }
        let advertised = match as_commit {
            Some(oid) => (oid, RefKind::Commit),
            None => advertised(&heads, reference)
                .ok_or_else(|| FetchFailure::Git(ref_not_found(url, reference, &heads)))?,
        };
        let held = || {
            repo.find_commit(advertised.0)
                .and_then(|c| c.tree())
                .is_ok()
        };
        if as_commit.is_none() && held() {
            // The branch (or tag) has not moved since it was fetched: no negotiation and no
            // pack, as `git fetch` skips it. The caller's credentials were checked above.
            return Ok(advertised);
        }
        let mut options = FetchOptions::new();
        options.remote_callbacks(callbacks);
        // Same-host redirects only: libgit2 refuses another host and names it.
        options.follow_redirects(git2::RemoteRedirect::None);
        options.download_tags(AutotagOption::None);
        options.update_fetchhead(false);
        if self.settings.depth > 0 && url.transport != Transport::Local {
            options.depth(self.settings.depth);
        }
        let refspecs = match as_commit {
            Some(oid) => vec![format!("+{oid}:refs/datasource/commit")],
            None => vec![
                format!("+refs/heads/{reference}:refs/datasource/heads/{reference}"),
                format!("+refs/tags/{reference}:refs/datasource/tags/{reference}"),
            ],
        };
        let fetched = connection
            .remote()
            .fetch(&refspecs, Some(&mut options), None);
        if let Err(error) = fetched {
            return Err(failure(error));
        }
        let (oid, kind) = advertised;
        let commit = repo
            .find_object(oid, None)
            .and_then(|object| object.peel_to_commit())
            .map_err(|e| match kind {
                RefKind::Commit => FetchFailure::Git(not_fetchable_commit(url, reference)),
                _ => FetchFailure::Damaged(format!(
                    "{oid} is missing after the fetch: {}",
                    e.message()
                )),
            })?;
        commit.tree().map_err(|e| {
            FetchFailure::Damaged(format!("the tree of {oid} is unreadable: {}", e.message()))
        })?;
        Ok((commit.id(), kind))
    }
}

/// Where the advertisement puts `reference`: a branch, else a tag (peeled to its commit).
fn advertised(heads: &[(String, Oid)], reference: &str) -> Option<(Oid, RefKind)> {
    let find = |name: &str| heads.iter().find(|(n, _)| n == name).map(|(_, oid)| *oid);
    if let Some(oid) = find(&format!("refs/heads/{reference}")) {
        return Some((oid, RefKind::Branch));
    }
    find(&format!("refs/tags/{reference}^{{}}"))
        .or_else(|| find(&format!("refs/tags/{reference}")))
        .map(|oid| (oid, RefKind::Tag))
}

/// Sets `http.followRedirects=false` in the repository's own configuration, once.
fn refuse_redirects(repo: &Repository) -> Result<(), git2::Error> {
    let mut config = repo.config()?;
    if config.get_bool("http.followRedirects").ok() != Some(false) {
        config.set_bool("http.followRedirects", false)?;
    }
    Ok(())
}

/// A local repository is read where it is: copying it into the cache would only cost time.
fn open_local(url: RepoUrl, path: &std::path::Path, reference: &str) -> Result<Fetched, GitError> {
    let repo = Repository::open(path)
        .map_err(|_| GitError::RepoNotFound(format!("{}: not a Git repository", path.display())))?;
    let peel = |name: &str| {
        repo.find_reference(name)
            .and_then(|r| r.peel_to_commit())
            .ok()
            .map(|c| c.id())
    };
    let found = if let Some(oid) = peel(&format!("refs/heads/{reference}")) {
        Some((oid, RefKind::Branch))
    } else if let Some(oid) = peel(&format!("refs/tags/{reference}")) {
        Some((oid, RefKind::Tag))
    } else {
        Oid::from_str(reference)
            .ok()
            .filter(|_| is_full_hex(reference))
            .and_then(|oid| repo.find_commit(oid).ok())
            .map(|c| (c.id(), RefKind::Commit))
    };
    let Some((commit, kind)) = found else {
        let heads: Vec<(String, Oid)> = repo
            .references()
            .map(|refs| {
                refs.flatten()
                    .filter_map(|r| Some((r.name()?.to_string(), r.target()?)))
                    .collect()
            })
            .unwrap_or_default();
        return Err(ref_not_found(&url, reference, &heads));
    };
    Ok(Fetched {
        repo_dir: repo.path().to_path_buf(),
        url,
        commit,
        kind,
        _lock: None,
    })
}

enum FetchFailure {
    Git(GitError),
    /// The cache entry is damaged: clone again.
    Damaged(String),
}

fn is_full_hex(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn not_fetchable_commit(url: &RepoUrl, reference: &str) -> GitError {
    GitError::RefNotFound(format!(
        "commit {reference} could not be fetched from {} (it does not exist, or the server does not allow \
         fetching a commit by id); use a branch or tag",
        url.masked()
    ))
}

fn ref_not_found(url: &RepoUrl, reference: &str, heads: &[(String, Oid)]) -> GitError {
    let names = |prefix: &str| -> Vec<String> {
        let mut names: Vec<String> = heads
            .iter()
            .filter_map(|(name, _)| name.strip_prefix(prefix))
            .filter(|name| !name.ends_with("^{}"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let list = |names: Vec<String>| {
        let shown: Vec<&str> = names.iter().take(15).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        match (shown.is_empty(), more) {
            (true, _) => "none".to_string(),
            (false, 0) => shown.join(", "),
            (false, more) => format!("{} and {more} more", shown.join(", ")),
        }
    };
    let branches = names("refs/heads/");
    let tags = names("refs/tags/");
    GitError::RefNotFound(format!(
        "{reference:?} is not a branch, tag or commit of {}; its branches: {}; its tags: {}",
        url.masked(),
        list(branches),
        list(tags)
    ))
}

/// Process-wide libgit2 settings for the network, made before this process's first
/// connection: where the system's CA certificates are (the vendored OpenSSL does not know),
/// and network timeouts (`<PREFIX>_CONNECT_TIMEOUT_SECS`, `<PREFIX>_IO_TIMEOUT_SECS`). Not at
/// start: loading the CA bundle costs 14 ms, which a crawl of a local path never needs.
pub(crate) fn init_network(env: EnvVars) {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let probe = openssl_probe::probe();
        let seconds = |name: &str, default: i32| {
            env.number::<i32>(name)
                .unwrap_or(default)
                .saturating_mul(1000)
        };
        // SAFETY: called once, before any connection of this process (every one starts in
        // `fetch_once` or `push`, after this); these settings touch nothing a local read uses.
        unsafe {
            if let Some(file) = probe.cert_file {
                let _ = git2::opts::set_ssl_cert_file(file);
            }
            if let Some(dir) = probe.cert_dir {
                let _ = git2::opts::set_ssl_cert_dir(dir);
            }
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(seconds(
                "CONNECT_TIMEOUT_SECS",
                15,
            ));
            let _ = git2::opts::set_server_timeout_in_milliseconds(seconds("IO_TIMEOUT_SECS", 60));
        }
    });
}
