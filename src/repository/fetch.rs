//! Fetching the configured branch for a run: on a blocking thread, with a tick at least
//! every 10 s meanwhile (the daemon drops a silent session), the SSH host key trusted on
//! first use kept in the state store.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::credentials::Credentials;
use super::params::CrawlParams;
use crate::store::sync_state::host_key_key;
use crate::store::{StateError, StateStore};
use git_remote::{self, FetchRequest, Fetched, GitClient, GitError, HostKeyStore, MemoryHostKeys};

/// Progress is reported at least this often while fetching.
pub const FETCH_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Fetches the branch of `params`; `tick` runs at least every 10 s while it lasts (its
/// error ends the fetch). Returns the host keys the connection used, for later connections
/// of the same run.
pub async fn fetch_branch<S, E, T>(
    client: &Arc<GitClient>,
    params: &CrawlParams,
    credentials: &Credentials,
    store: &S,
    deadline: Option<Instant>,
    tick: impl Fn() -> T,
) -> Result<(Fetched, Arc<MemoryHostKeys>), E>
where
    S: StateStore,
    E: From<GitError> + From<StateError>,
    T: Future<Output = Result<(), E>> + Send,
{
    let host_keys = Arc::new(MemoryHostKeys::default());
    let url = git_remote::url::RepoUrl::parse(&params.repo_url)?;
    if url.transport == git_remote::url::Transport::Ssh {
        let name = url.known_hosts_name();
        if let Some(key) = store.get(&host_key_key(&name)).await? {
            host_keys.record(&name, &String::from_utf8_lossy(&key));
        }
    }
    let work = {
        let (client, params, credentials, host_keys) = (
            client.clone(),
            params.clone(),
            credentials.clone(),
            host_keys.clone(),
        );
        tokio::task::spawn_blocking(move || {
            client.fetch(&FetchRequest {
                url: &params.repo_url,
                reference: &params.branch,
                credentials: &credentials.git,
                host_keys: host_keys.as_ref(),
                deadline,
                progress: None,
            })
        })
    };
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + FETCH_PROGRESS_EVERY,
        FETCH_PROGRESS_EVERY,
    );
    let fetched = loop {
        tokio::select! {
            done = &mut work => break done.map_err(|e| GitError::Cache(format!("the fetch's worker crashed: {e}")))??,
            _ = ticks.tick() => tick().await?,
        }
    };
    remember_host_key(&fetched, credentials, &host_keys, store).await?;
    Ok((fetched, host_keys))
}

/// Records an SSH host key trusted on first use.
async fn remember_host_key<S: StateStore>(
    fetched: &Fetched,
    credentials: &Credentials,
    host_keys: &MemoryHostKeys,
    store: &S,
) -> Result<(), StateError> {
    if fetched.url.transport != git_remote::url::Transport::Ssh
        || !credentials.git.ssh_known_hosts.trim().is_empty()
    {
        return Ok(());
    }
    let name = fetched.url.known_hosts_name();
    let key = host_key_key(&name);
    if let Some(seen) = host_keys.recorded(&name) {
        if store.get(&key).await?.as_deref() != Some(seen.as_bytes()) {
            store.set(&key, seen.as_bytes()).await?;
        }
    }
    Ok(())
}
