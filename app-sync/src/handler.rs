//! What the plugin does with each request the daemon routes to it: tool credential
//! validation and the five tools.

use std::sync::Arc;

use dify_plugin::protocol::{ErrorPayload, HandlerFuture, Request, RequestHandler, Session};
use dify_plugin::tool::{self, ToolMessage, ToolRequest, INVOKE_TOOL, VALIDATE_TOOL_CREDENTIALS};
use git_remote::{CredentialProblem, GitClient};

use crate::console::apps::Version;
use crate::console::Console;
use crate::settings::Settings;
use crate::state::StateStore;
use crate::sync::export::ExportOptions;
use crate::sync::import::ImportOptions;
use crate::sync::{self, app_list, SyncContext, SyncError};

pub struct AppSyncHandler {
    pub git: Arc<GitClient>,
}

impl RequestHandler for AppSyncHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        let git = self.git.clone();
        Box::pin(async move {
            match (request.kind.as_str(), request.action.as_str()) {
                ("tool", VALIDATE_TOOL_CREDENTIALS) => validate(&request, &session, git).await,
                ("tool", INVOKE_TOOL) => invoke(&request, &session, git).await,
                (kind, action) => Err(ErrorPayload::new(
                    "InvokeBadRequestError",
                    format!(
                        "app_git_sync does not handle {kind}/{action}; it serves \
                         tool/{VALIDATE_TOOL_CREDENTIALS} and tool/{INVOKE_TOOL}"
                    ),
                )
                .with_arg("type", kind)
                .with_arg("action", action)),
            }
        })
    }
}

fn credential_error(problems: &[CredentialProblem]) -> ErrorPayload {
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut error = ErrorPayload::new(
        "CredentialsValidateFailedError",
        format!("the authorization has problems: {}", listed.join("; ")),
    );
    for problem in problems {
        error = error.with_arg(problem.field, problem.message.clone());
    }
    error
}

fn context(
    tool: &ToolRequest,
    session: &Session,
    git: Arc<GitClient>,
) -> Result<SyncContext, ErrorPayload> {
    let settings =
        Settings::from_credentials(&tool.credentials).map_err(|p| credential_error(&p))?;
    let console = Console::new(&settings.console_url, settings.sign_in.clone())
        .map_err(|message| ErrorPayload::new("CredentialsValidateFailedError", message))?;
    Ok(SyncContext {
        settings,
        console,
        git,
        store: StateStore::Plugin(session.storage()),
    })
}

/// Signs in to Dify and reads the branch: the two things every tool needs.
async fn validate(
    request: &Request,
    session: &Session,
    git: Arc<GitClient>,
) -> Result<(), ErrorPayload> {
    let tool = ToolRequest::from_request(request)?;
    let ctx = context(&tool, session, git)?;
    let mut problems = Vec::new();
    if let Err(error) = ctx.console.check().await {
        problems.push(CredentialProblem {
            field: "sign_in",
            message: error.to_string(),
        });
    }
    if let Err(error) = ctx.open().await {
        problems.push(CredentialProblem {
            field: "repository_url",
            message: error.to_string(),
        });
    }
    match problems.is_empty() {
        true => tool::credentials_valid(session).await,
        false => Err(credential_error(&problems)),
    }
}

async fn invoke(
    request: &Request,
    session: &Session,
    git: Arc<GitClient>,
) -> Result<(), ErrorPayload> {
    let tool = ToolRequest::from_request(request)?;
    let ctx = context(&tool, session, git)?;
    let apps = app_list(&tool.text("apps")?);
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
            (report.describe(), sync::to_json(&report))
        }
        "import_apps" => {
            let options = ImportOptions {
                apps,
                create_new: tool.flag("create_new")?,
                confirm_newer_dsl: tool.flag("confirm_newer_dsl")?,
                publish: tool.flag("publish")?,
            };
            let report = sync::import::import(&ctx, &options).await.map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "sync_status" => {
            let report = sync::status::status(&ctx, &apps).await.map_err(failed)?;
            (report.describe(), sync::to_json(&report))
        }
        "app_diff" => {
            let report = sync::inspect::diff(&ctx, &tool.text("app")?, &tool.text("commit")?)
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
        other => {
            return Err(bad_parameter(&format!(
                "app_git_sync has no tool {other:?}; its tools are export_apps, import_apps, sync_status, app_diff and app_history"
            )))
        }
    };
    ToolMessage::Text(text).send(session).await?;
    ToolMessage::Json(json).send(session).await
}

fn bad_parameter(message: &str) -> ErrorPayload {
    ErrorPayload::new("ToolParameterValidationError", message)
}

fn failed(error: SyncError) -> ErrorPayload {
    let kind = match &error {
        SyncError::Console(_) => "console",
        SyncError::Git(_) => "git",
        SyncError::Dsl(_) => "dsl",
        SyncError::State(_) => "state",
        SyncError::Input(_) => "input",
    };
    ErrorPayload::new("ToolInvokeError", error.to_string()).with_arg("kind", kind)
}
