//! What the plugin does with each request the daemon routes to it.

mod crawl;
mod session;
mod validate_credentials;

use std::sync::Arc;

use crate::dify::knowledge::KnowledgeApi;
use crate::mirror::record::RecordMemory;
use crate::mirror::watchers::Watchers;
use crate::settings::Settings;
use dify_plugin::protocol::{ErrorPayload, HandlerFuture, Request, RequestHandler, Session, Shown};
use git_remote::GitClient;

pub const VALIDATE_CREDENTIALS: &str = "validate_datasource_credentials";
pub const GET_CRAWL: &str = "invoke_website_datasource_get_crawl";

/// The plugin's request handler: datasource credential validation and the website crawl.
pub struct PluginHandler {
    pub git: Arc<GitClient>,
    /// What this process remembers of knowledge bases, and their background watchers.
    pub mirrors: Arc<MirrorProcess>,
    pub settings: Arc<Settings>,
}

pub struct MirrorProcess {
    pub memory: Arc<RecordMemory>,
    pub watchers: Watchers,
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
            mirrors: Arc::new(MirrorProcess {
                memory: Arc::default(),
                watchers: Watchers::new(settings.watchers),
                http: std::sync::OnceLock::new(),
                dify_retry: settings.dify_retry,
            }),
            settings: Arc::new(settings),
        }
    }
}

impl RequestHandler for PluginHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        let (git, mirrors, settings) = (
            self.git.clone(),
            self.mirrors.clone(),
            self.settings.clone(),
        );
        Box::pin(async move {
            match (request.kind.as_str(), request.action.as_str()) {
                ("datasource", VALIDATE_CREDENTIALS) => {
                    validate_credentials::handle(&request, &session, &mirrors).await
                }
                ("datasource", GET_CRAWL) => {
                    crawl::handle(&request, &session, git, &mirrors, &settings).await
                }
                (kind, action) => Err(ErrorPayload::shown(
                    Shown::BadRequest,
                    "UnsupportedAction",
                    format!(
                        "git_datasource does not handle {kind}/{action}; it serves \
                         datasource/{VALIDATE_CREDENTIALS} and datasource/{GET_CRAWL}"
                    ),
                )
                .with_arg("type", kind)
                .with_arg("action", action)),
            }
        })
    }
}
