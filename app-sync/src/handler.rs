//! What the plugin does with each request the daemon routes to it: tool credential
//! validation, the tools, and the push webhook endpoint.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dify_plugin::endpoint::{EndpointRequest, EndpointResponse, INVOKE_ENDPOINT};
use dify_plugin::protocol::{ErrorPayload, HandlerFuture, Request, RequestHandler, Session, Shown};
use dify_plugin::tool::{self, ToolMessage, ToolRequest, INVOKE_TOOL, VALIDATE_TOOL_CREDENTIALS};
use git_remote::{CredentialProblem, Fault, GitClient};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::console::apps::Version;
use crate::console::sign_in::SignIn;
use crate::console::{Console, ConsoleError};
use crate::review::DiffFormat;
use crate::settings::Settings;
use crate::state::StateStore;
use crate::sync::export::ExportOptions;
use crate::sync::import::ImportOptions;
use crate::sync::{self, app_list, SyncContext, SyncError};

pub struct AppSyncHandler {
    git: Arc<GitClient>,
    consoles: Arc<ConsoleSessions>,
    /// Where the push webhook keeps its sync state and deliveries.
    webhook_state: Arc<PathBuf>,
}

impl AppSyncHandler {
    pub fn new(git: GitClient, webhook_state: PathBuf) -> Self {
        AppSyncHandler {
            git: Arc::new(git),
            consoles: Arc::default(),
            webhook_state: Arc::new(webhook_state),
        }
    }
}

/// Signed-in consoles kept between calls, in memory only, by a hash of the console URL and
/// the sign-in: a schedule that exports every few minutes signs in once, not every time
/// (Dify rate-limits logins). Dify still checks the session on every call.
#[derive(Default)]
struct ConsoleSessions(Mutex<Vec<(String, Arc<Console>)>>);

/// How many signed-in consoles are kept (the oldest goes first).
const KEPT_CONSOLES: usize = 8;

impl ConsoleSessions {
    fn get(&self, settings: &Settings) -> Result<Arc<Console>, String> {
        let secret_parts = match &settings.sign_in {
            SignIn::AdminKey { key, workspace_id } => vec!["key", key, workspace_id],
            SignIn::Password { email, password } => vec!["password", email, password],
            SignIn::Session {
                access_token,
                refresh_token,
                csrf_token,
            } => vec!["session", access_token, refresh_token, csrf_token],
            SignIn::OpenApi {
                token,
                workspace_id,
                fallback,
            } => {
                let mut parts = vec!["openapi", token.as_str(), workspace_id.as_str()];
                if let Some(SignIn::Password { email, password }) = fallback.as_deref() {
                    parts.extend([email.as_str(), password.as_str()]);
                }
                parts
            }
        };
        let mut hasher = Sha256::new();
        for part in std::iter::once(settings.console_url.as_str()).chain(secret_parts) {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        let key = hex::encode(hasher.finalize());
        let mut kept = self.0.lock().expect("console sessions lock");
        if let Some(i) = kept.iter().position(|(k, _)| *k == key) {
            let entry = kept.remove(i);
            let console = entry.1.clone();
            kept.push(entry);
            return Ok(console);
        }
        let console = Arc::new(Console::new(
            &settings.console_url,
            settings.sign_in.clone(),
        )?);
        if kept.len() >= KEPT_CONSOLES {
            kept.remove(0);
        }
        kept.push((key, console.clone()));
        Ok(console)
    }
}

impl RequestHandler for AppSyncHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        let (git, consoles) = (self.git.clone(), self.consoles.clone());
        let webhook_state = self.webhook_state.clone();
        Box::pin(async move {
            let call = || ToolCall::new(&request, &session, git.clone(), &consoles, &webhook_state);
            match (request.kind.as_str(), request.action.as_str()) {
                ("tool", VALIDATE_TOOL_CREDENTIALS) => validate(call()?, &session).await,
                ("tool", INVOKE_TOOL) => invoke(call()?, &session).await,
                ("endpoint", INVOKE_ENDPOINT) => {
                    let http = EndpointRequest::from_request(&request)?;
                    webhook(&http, &session, git, &consoles, &webhook_state).await
                }
                (kind, action) => Err(ErrorPayload::shown(
                    Shown::BadRequest,
                    "UnsupportedAction",
                    format!(
                        "app_git_sync does not handle {kind}/{action}; it serves \
                         tool/{VALIDATE_TOOL_CREDENTIALS}, tool/{INVOKE_TOOL} and \
                         endpoint/{INVOKE_ENDPOINT}"
                    ),
                )
                .with_arg("type", kind)
                .with_arg("action", action)),
            }
        })
    }
}

/// The push webhook: answers, then imports what was pushed.
async fn webhook(
    http: &EndpointRequest,
    session: &Session,
    git: Arc<GitClient>,
    consoles: &ConsoleSessions,
    state_root: &std::path::Path,
) -> Result<(), ErrorPayload> {
    let (mut response, accepted) = crate::webhook::check(http, state_root);
    let mut job = None;
    if let Some(accepted) = accepted {
        match consoles.get(&accepted.settings) {
            Ok(console) => {
                let store = StateStore::Files(accepted.dir.clone());
                let mut ctx = SyncContext::new(accepted.settings.clone(), console, git, store);
                // The tools' record, read while the session lasts, for the bases of their runs.
                let shared = StateStore::Plugin(session.storage());
                match shared.load(&accepted.settings.target_key()).await {
                    Ok(seed) => ctx = ctx.with_seed(seed),
                    Err(error) => tracing::warn!("the tools' sync state: {error}"),
                }
                job = Some((accepted, ctx));
            }
            Err(message) => response = EndpointResponse::text(503, message),
        }
    }
    response.send(session).await?;
    if let Some((accepted, ctx)) = job {
        tokio::spawn(accepted.run(ctx));
    }
    Ok(())
}

fn credential_error(problems: &[CredentialProblem]) -> ErrorPayload {
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut error = ErrorPayload::shown(
        Shown::Credentials,
        "CredentialsValidateFailedError",
        format!("the authorization has problems: {}", listed.join("; ")),
    );
    for problem in problems {
        error = error.with_arg(problem.field, problem.message.clone());
    }
    error
}

/// A tool request with what it runs on.
struct ToolCall {
    tool: ToolRequest,
    ctx: SyncContext,
}

impl ToolCall {
    fn new(
        request: &Request,
        session: &Session,
        git: Arc<GitClient>,
        consoles: &ConsoleSessions,
        webhook_state: &std::path::Path,
    ) -> Result<ToolCall, ErrorPayload> {
        let tool = ToolRequest::from_request(request)?;
        let settings =
            Settings::from_credentials(&tool.credentials).map_err(|p| credential_error(&p))?;
        let console = consoles.get(&settings).map_err(|message| {
            ErrorPayload::shown(
                Shown::Credentials,
                "CredentialsValidateFailedError",
                message,
            )
        })?;
        // The push webhook reads the bases of the tools' runs from this copy.
        let local_copy =
            StateStore::Files(webhook_state.join(crate::webhook::target_dir(&settings)));
        let ctx = SyncContext::new(
            settings,
            console,
            git,
            StateStore::Plugin(session.storage()),
        )
        .with_local_copy(local_copy);
        Ok(ToolCall { tool, ctx })
    }
}

/// Signs in to Dify and reads the branch: the two things every tool needs.
async fn validate(call: ToolCall, session: &Session) -> Result<(), ErrorPayload> {
    let ctx = call.ctx;
    let mut problems = Vec::new();
    if let Err(error) = ctx.console.check().await {
        problems.push(CredentialProblem {
            field: "sign_in",
            message: error.to_string(),
        });
    }
    let signed_in = problems.is_empty();
    if let Err(error) = ctx.open().await {
        let message = error.to_string();
        // With an environment, opening also reads its file and what its Dify has.
        let field = match error {
            _ if message.contains(crate::environment::DIRECTORY) => Some("environment"),
            SyncError::Console(_) => signed_in.then_some("environment"),
            _ => Some("repository_url"),
        };
        if let Some(field) = field {
            problems.push(CredentialProblem { field, message });
        }
    }
    match problems.is_empty() {
        true => tool::credentials_valid(session).await,
        false => Err(credential_error(&problems)),
    }
}

async fn invoke(call: ToolCall, session: &Session) -> Result<(), ErrorPayload> {
    let (tool, ctx) = (call.tool, call.ctx);
    let apps = app_list(&tool.text("apps")?);
    let mut variables = Vec::new();
    let (text, json) = match tool.tool.as_str() {
        "export_apps" => {
            let version = match tool.text("version")?.as_str() {
                "" | "draft" => Version::Draft,
                "published" => Version::Published,
                _ => return Err(bad_parameter("version must be draft or published")),
            };
            let options = ExportOptions {
                apps,
                version,
                message: tool.text("message")?,
            };
            let report = sync::export::export(&ctx, &options).await.map_err(failed)?;
            // The outputs `tools/export_apps.yaml` declares, for the next node of a workflow.
            let conflicts: Vec<&str> = report.conflicts.iter().map(|c| c.app.as_str()).collect();
            variables = vec![
                ("commit", json!(report.commit.clone().unwrap_or_default())),
                ("changed", json!(report.exported)),
                ("conflicts", json!(conflicts)),
            ];
            (report.describe(), sync::to_json(&report))
        }
        "import_apps" => {
            let options = ImportOptions {
                apps,
                create_new: tool.flag("create_new")?,
                confirm_newer_dsl: tool.flag("confirm_newer_dsl")?,
                publish: tool.flag("publish")?,
                dry_run: tool.flag("dry_run")?,
                delete_apps: sync::app_list(&tool.text("delete_apps")?),
            };
            let report = sync::import::import(&ctx, &options).await.map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "sync_status" => {
            let report = sync::status::status(&ctx, &apps).await.map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "app_diff" => {
            let format = DiffFormat::named(&tool.text("format")?)
                .map_err(|problem| bad_parameter(&problem))?;
            let report =
                sync::inspect::diff(&ctx, &tool.text("app")?, &tool.text("commit")?, format)
                    .await
                    .map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "app_history" => {
            let report = sync::inspect::history(&ctx, &tool.text("app")?)
                .await
                .map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "lint_apps" => {
            let report = sync::inspect::lint(&ctx, &apps).await.map_err(failed)?;
            variables = vec![
                ("errors", json!(report.errors)),
                ("warnings", json!(report.warnings)),
            ];
            (report.describe(), sync::to_json(&report))
        }
        other => {
            return Err(bad_parameter(&format!(
                "app_git_sync has no tool {other:?}; its tools are export_apps, import_apps, \
                 sync_status, app_diff, app_history and lint_apps"
            )))
        }
    };
    let (mut text, mut json) = (text, json);
    if let Some(through) = ctx.console.signed_in_through().await {
        text.push_str(&format!("\nSigned in through {through}."));
        json["signed_in_through"] = json!(through);
    }
    ToolMessage::Text(text).send(session).await?;
    ToolMessage::Json(json).send(session).await?;
    for (name, value) in variables {
        let name = name.to_string();
        ToolMessage::Variable { name, value }.send(session).await?;
    }
    Ok(())
}

fn bad_parameter(message: &str) -> ErrorPayload {
    ErrorPayload::shown(Shown::BadRequest, "ToolParameterValidationError", message)
}

/// A failed run as Dify shows it: one of the error types it turns into text ([`Shown`]),
/// what failed in `args.kind`.
fn failed(error: SyncError) -> ErrorPayload {
    let (shown, kind) = match &error {
        SyncError::Console(console) => (
            match console {
                ConsoleError::Unreachable { .. } => Shown::Connection,
                ConsoleError::SignIn(_) => Shown::Authorization,
                ConsoleError::Refused {
                    status: 401 | 403, ..
                } => Shown::Authorization,
                ConsoleError::Refused { status: 429, .. } => Shown::RateLimit,
                ConsoleError::Refused { status: 500.., .. } | ConsoleError::Malformed { .. } => {
                    Shown::ServerUnavailable
                }
                ConsoleError::Refused { .. }
                | ConsoleError::Redirected(_)
                | ConsoleError::Unsupported(_) => Shown::BadRequest,
            },
            "console",
        ),
        SyncError::Git(git) => (
            match git.fault() {
                Fault::Input => Shown::BadRequest,
                Fault::Credentials => Shown::Authorization,
                Fault::Network => Shown::Connection,
                Fault::Server => Shown::ServerUnavailable,
            },
            "git",
        ),
        SyncError::Dsl(_) => (Shown::BadRequest, "dsl"),
        SyncError::State(_) => (Shown::ServerUnavailable, "state"),
        SyncError::Input(_) => (Shown::BadRequest, "input"),
    };
    ErrorPayload::shown(shown, "ToolInvokeError", error.to_string()).with_arg("kind", kind)
}
