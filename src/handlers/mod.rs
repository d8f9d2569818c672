//! What the plugin does with each request the daemon routes to it.

mod browse_files;
mod browse_mirror;
mod crawl;
mod download_file;
mod session;
mod validate_credentials;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::browse::seal::Seal;

use crate::dify::knowledge::KnowledgeApi;
use crate::mirror::record::RecordMemory;
use crate::mirror::watchers::Watchers;
use crate::settings::Settings;
use dify_plugin::protocol::{ErrorPayload, HandlerFuture, Request, RequestHandler, Session, Shown};
use git_remote::GitClient;

pub const VALIDATE_CREDENTIALS: &str = "validate_datasource_credentials";
pub const GET_CRAWL: &str = "invoke_website_datasource_get_crawl";
pub const BROWSE_FILES: &str = "invoke_online_drive_browse_files";
pub const DOWNLOAD_FILE: &str = "invoke_online_drive_download_file";

/// The plugin's request handler, for both packages the binary ships in: datasource
/// credential validation, the website crawl, and the browser's pages and files.
pub struct PluginHandler {
    pub git: Arc<GitClient>,
    /// Seals the browser's ids for this process.
    pub seal: Arc<Seal>,
    /// What this process remembers of knowledge bases, and their background watchers.
    pub mirrors: Arc<MirrorProcess>,
    pub settings: Arc<Settings>,
}

pub struct MirrorProcess {
    pub memory: Arc<RecordMemory>,
    pub watchers: Watchers,
    /// The browser imports being watched: the commit each watch was started for, and when.
    pub browse_claims: Mutex<HashMap<String, (String, Instant)>>,
    /// One HTTP client (and connection pool) for every crawl and watcher.
    http: std::sync::OnceLock<reqwest::Client>,
    /// The Knowledge API's first backoff.
    dify_retry: std::time::Duration,
}

impl MirrorProcess {
    /// A Knowledge API client over the process's connection pool.
    pub fn knowledge_api(&self, base_url: &str, key: &str) -> Result<KnowledgeApi, String> {
        let http = self
            .http
            .get_or_init(|| dify_plugin::dify_http::client().unwrap_or_default())
            .clone();
        let api = KnowledgeApi::with_client(http, base_url, key)?;
        Ok(api.with_first_backoff(self.dify_retry))
    }
}

impl PluginHandler {
    pub fn new(git: GitClient, settings: Settings) -> Self {
        PluginHandler {
            git: Arc::new(git),
            seal: Arc::new(Seal::new()),
            mirrors: Arc::new(MirrorProcess {
                memory: Arc::default(),
                watchers: Watchers::new(settings.watchers),
                browse_claims: Mutex::default(),
                http: std::sync::OnceLock::new(),
                dify_retry: settings.dify_retry,
            }),
            settings: Arc::new(settings),
        }
    }
}

impl RequestHandler for PluginHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        let (git, mirrors, settings, seal) = (
            self.git.clone(),
            self.mirrors.clone(),
            self.settings.clone(),
            self.seal.clone(),
        );
        Box::pin(async move {
            match (request.kind.as_str(), request.action.as_str()) {
                ("datasource", VALIDATE_CREDENTIALS) => {
                    validate_credentials::handle(&request, &session, git, &mirrors).await
                }
                ("datasource", GET_CRAWL) => {
                    crawl::handle(&request, &session, git, &mirrors, &settings).await
                }
                ("datasource", BROWSE_FILES) => {
                    browse_files::handle(&request, &session, git, &seal, &settings).await
                }
                ("datasource", DOWNLOAD_FILE) => {
                    download_file::handle(&request, &session, git, &seal, &mirrors, &settings).await
                }
                (kind, action) => Err(ErrorPayload::shown(
                    Shown::BadRequest,
                    "UnsupportedAction",
                    format!(
                        "git_datasource does not handle {kind}/{action}; it serves \
                         datasource/{VALIDATE_CREDENTIALS}, {GET_CRAWL}, {BROWSE_FILES} and \
                         {DOWNLOAD_FILE}"
                    ),
                )
                .with_arg("type", kind)
                .with_arg("action", action)),
            }
        })
    }
}
