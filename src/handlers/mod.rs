//! What the plugin does with each request the daemon routes to it.

mod crawl;
mod validate_credentials;

use std::sync::Arc;

use crate::mirror::record::RecordMemory;
use crate::mirror::watcher::Watchers;
use dify_plugin::protocol::{ErrorPayload, HandlerFuture, Request, RequestHandler, Session, Shown};
use git_remote::GitClient;

pub const VALIDATE_CREDENTIALS: &str = "validate_datasource_credentials";
pub const GET_CRAWL: &str = "invoke_website_datasource_get_crawl";

/// The plugin's request handler: datasource credential validation and the website crawl.
pub struct PluginHandler {
    pub git: Arc<GitClient>,
    /// What this process remembers of knowledge bases, and their background watchers.
    pub mirrors: Arc<MirrorProcess>,
}

#[derive(Default)]
pub struct MirrorProcess {
    pub memory: Arc<RecordMemory>,
    pub watchers: Watchers,
    /// One HTTP client (and connection pool) for every crawl and watcher.
    pub http: std::sync::OnceLock<reqwest::Client>,
}

impl PluginHandler {
    pub fn new(git: GitClient) -> Self {
        PluginHandler {
            git: Arc::new(git),
            mirrors: Arc::default(),
        }
    }
}

impl RequestHandler for PluginHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        let (git, mirrors) = (self.git.clone(), self.mirrors.clone());
        Box::pin(async move {
            match (request.kind.as_str(), request.action.as_str()) {
                ("datasource", VALIDATE_CREDENTIALS) => {
                    validate_credentials::handle(&request, &session).await
                }
                ("datasource", GET_CRAWL) => crawl::handle(&request, &session, git, &mirrors).await,
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
