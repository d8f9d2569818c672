//! The crawl in-process: a state store in memory and a sink that keeps every message.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use git_datasource::crawl::{Crawl, CrawlError, CrawlSettings, CrawlSink, Crawled, RunSummary};
use git_datasource::mirror::Mirror;
use git_datasource::repository::credentials::Credentials;
use git_datasource::repository::params::CrawlParams;
use git_datasource::store::{StateError, StateStore};
use git_remote::{FetchSettings, GitClient, RepoCache};
use serde_json::Value;

#[derive(Default, Clone)]
pub struct MemoryStore(pub Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl StateStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StateError> {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }
    async fn del(&self, key: &str) -> Result<(), StateError> {
        self.0.lock().unwrap().remove(key);
        Ok(())
    }
}

pub struct CaptureSink {
    pub budget: usize,
    pub progress: Mutex<Vec<(usize, usize)>>,
    pub finals: Mutex<Vec<Vec<u8>>>,
}

impl CaptureSink {
    pub fn new(budget: usize) -> Self {
        CaptureSink {
            budget,
            progress: Mutex::new(Vec::new()),
            finals: Mutex::new(Vec::new()),
        }
    }

    /// The documents of the last final message.
    pub fn documents(&self) -> Vec<Value> {
        let finals = self.finals.lock().unwrap();
        let message: Value =
            serde_json::from_slice(finals.last().expect("a final message")).unwrap();
        message["result"]["web_info_list"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl CrawlSink for CaptureSink {
    async fn progress(&self, total: usize, completed: usize) -> Result<(), CrawlError> {
        self.progress.lock().unwrap().push((total, completed));
        Ok(())
    }
    fn data_budget(&self) -> usize {
        self.budget
    }
    async fn finish(&self, data: Vec<u8>) -> Result<(), CrawlError> {
        self.finals.lock().unwrap().push(data);
        Ok(())
    }
}

pub fn local_client(cache: &Path) -> Arc<GitClient> {
    let settings = FetchSettings {
        allow_local: true,
        ..FetchSettings::from_env(git_datasource::GIT_ENV)
    };
    Arc::new(GitClient::new(
        RepoCache::new(cache.to_path_buf(), u64::MAX),
        settings,
    ))
}

/// The start of the `source_url` of every document of `url`'s default configuration
/// (`git:<config hash>:`).
pub fn source_url_prefix(url: &str) -> String {
    format!(
        "git:{}:",
        git_datasource::repository::identity::config_hash(&params(url, serde_json::json!({})))
    )
}

pub fn params(url: &str, extra: Value) -> CrawlParams {
    let mut value = serde_json::json!({"repo_url": url});
    value
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    CrawlParams::from_json(Some(&value)).unwrap()
}

/// One run in a fresh async runtime.
pub fn run(
    params: &CrawlParams,
    store: &MemoryStore,
    sink: &CaptureSink,
    client: Arc<GitClient>,
    settings: &CrawlSettings,
) -> Result<RunSummary, CrawlError> {
    run_mirrored(params, store, sink, client, settings, None).map(|crawled| crawled.summary)
}

/// One run in a fresh async runtime, mirroring into a knowledge base when given; with the
/// watch that follows it.
pub fn run_mirrored(
    params: &CrawlParams,
    store: &MemoryStore,
    sink: &CaptureSink,
    client: Arc<GitClient>,
    settings: &CrawlSettings,
    mirror: Option<&Mirror>,
) -> Result<Crawled, CrawlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let credentials = Credentials::default();
    runtime.block_on(
        Crawl {
            params,
            credentials: &credentials,
            store,
            sink,
            client,
            settings,
            mirror,
        }
        .run(),
    )
}
