//! The branch as a tree the user browses and picks from (the `git_browser` package, an
//! `online_drive` provider): one folder a page at a time, every id naming the commit it was
//! listed at, each picked file's text read from the cached clone when Dify processes it.
//! Its authorization holds the whole configuration (Dify passes a browse or a download
//! nothing else), read here with the crawl's own readers, so its documents carry the
//! crawl's identity.

pub mod file_id;
pub mod folder_page;
pub mod seal;

use std::sync::Arc;

use git2::Oid;
use serde_json::Value;

use crate::repository::credentials::Credentials;
use crate::repository::fetch::fetch_branch;
use crate::repository::identity::{config_hash, legacy_config_hash};
use crate::repository::params::CrawlParams;
use crate::store::{StateError, StateStore};
use git_remote::{Fetched, GitClient, GitError};
use seal::fingerprint;

/// The provider's name in its YAML and in the daemon's requests.
pub const PROVIDER: &str = "git_browser";

/// One authorization of the browser: where, what and as whom to read.
#[derive(Clone)]
pub struct BrowseSource {
    pub params: CrawlParams,
    pub credentials: Credentials,
    /// The configuration's hash, as the crawl computes it.
    pub hash: String,
    pub legacy_hash: Option<String>,
    /// Stands for the Git credentials in seals.
    pub who: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("plugin storage: {0}")]
    State(#[from] StateError),
    /// The request names nothing this listing handed out, or another configuration's.
    #[error("{0}")]
    Request(String),
}

impl BrowseSource {
    /// Reads the authorization: the crawl's parameters and credentials, every problem at once.
    pub fn from_credentials(value: Option<&Value>) -> Result<BrowseSource, Vec<String>> {
        let params = CrawlParams::from_json(value).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| p.replace("in the datasource node", "in the authorization"))
                .collect::<Vec<_>>()
        });
        let credentials = Credentials::from_request(value)
            .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>());
        match (params, credentials) {
            (Ok(params), Ok(credentials)) => Ok(BrowseSource {
                hash: config_hash(&params),
                legacy_hash: legacy_config_hash(&params),
                who: fingerprint(&credentials.git),
                params,
                credentials,
            }),
            (params, credentials) => Err(params
                .err()
                .into_iter()
                .chain(credentials.err())
                .flatten()
                .collect()),
        }
    }

    /// Fetches the branch: the one request of a listing that asks the server (its token
    /// checked, an unmoved branch costing the ref advertisement only).
    pub async fn fetch_branch<S: StateStore>(
        &self,
        client: &Arc<GitClient>,
        store: &S,
    ) -> Result<Fetched, BrowseError> {
        let (fetched, _) = fetch_branch(
            client,
            &self.params,
            &self.credentials,
            store,
            None,
            || async { Ok::<(), BrowseError>(()) },
        )
        .await?;
        Ok(fetched)
    }

    /// A commit this listing handed out. With a good seal it is read from the cached clone
    /// as it is; otherwise (another process sealed it, or nobody did) or when the clone no
    /// longer holds it, it is fetched by id with these credentials, so the server decides.
    pub async fn open_listed<S: StateStore>(
        &self,
        client: &Arc<GitClient>,
        store: &S,
        commit: Oid,
        sealed: bool,
    ) -> Result<Fetched, BrowseError> {
        if sealed {
            let client = client.clone();
            let url = self.params.repo_url.clone();
            let reopened =
                tokio::task::spawn_blocking(move || client.reopen(&client.place_of(&url, commit)?))
                    .await
                    .map_err(|e| GitError::Cache(format!("the reader crashed: {e}")))?;
            if let Ok(fetched) = reopened {
                return Ok(fetched);
            }
        }
        let pinned = BrowseSource {
            params: CrawlParams {
                branch: commit.to_string(),
                ..self.params.clone()
            },
            ..self.clone()
        };
        let fetched = pinned.fetch_branch(client, store).await?;
        match fetched.commit == commit {
            true => Ok(fetched),
            false => Err(BrowseError::Request(format!(
                "commit {commit} is not what the server gave for it; open the data source again"
            ))),
        }
    }

    /// Refuses an id made under other settings (repository, branch or filters changed
    /// since the listing).
    pub fn check_hash(&self, hash: &str) -> Result<(), BrowseError> {
        match hash == self.hash || self.legacy_hash.as_deref() == Some(hash) {
            true => Ok(()),
            false => Err(BrowseError::Request(
                "this item was listed under other settings (the authorization's repository, \
                 branch or filters changed since, or Dify read a picked folder with another \
                 authorization: it uses the workspace's default one, so make the one you browse \
                 the default); open the data source again and pick it anew"
                    .into(),
            )),
        }
    }
}
