//! `validate_datasource_credentials`: checks every credential's format, and a Knowledge API
//! key against the API, and answers `{"result": true}`, or an error that names each field
//! and its fix. The browser's authorization is its whole configuration: its branch is
//! fetched too.

use std::sync::Arc;

use serde_json::json;

use super::browse_files::source_of;
use super::session::SessionStore;
use super::MirrorProcess;
use crate::browse;
use crate::dify::knowledge::ApiErrorKind;
use crate::repository::credentials::{CredentialProblem, Credentials};
use dify_plugin::protocol::{ErrorPayload, Request, Session, Shown};
use git_remote::GitClient;

/// How long a validation waits on plugin storage (an SSH host key trusted on first use).
const STORAGE_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn handle(
    request: &Request,
    session: &Session,
    git: Arc<GitClient>,
    mirrors: &MirrorProcess,
) -> Result<(), ErrorPayload> {
    if request.fields.get("provider").and_then(|p| p.as_str()) == Some(browse::PROVIDER) {
        return check_browser(request, session, git, mirrors).await;
    }
    let problems = match Credentials::from_request(request.fields.get("credentials")) {
        Ok(credentials) => match credentials.problems() {
            problems if problems.is_empty() => check_api_key(&credentials, mirrors).await,
            problems => problems,
        },
        Err(problems) => problems,
    };
    if problems.is_empty() {
        session.stream(json!({"result": true})).await.map_err(|e| {
            ErrorPayload::shown(Shown::ServerUnavailable, "InternalError", e.to_string())
        })?;
        return Ok(());
    }
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut error = ErrorPayload::shown(
        Shown::Credentials,
        "CredentialsValidateFailedError",
        format!("the authorization has problems: {}", listed.join("; ")),
    );
    for problem in &problems {
        error = error.with_arg(problem.field, problem.message.clone());
    }
    Err(error)
}

/// The browser's authorization holds its whole configuration: its format, the Knowledge
/// API key, and the branch itself, fetched with these credentials (the clone its first
/// listing then reads).
async fn check_browser(
    request: &Request,
    session: &Session,
    git: Arc<GitClient>,
    mirrors: &MirrorProcess,
) -> Result<(), ErrorPayload> {
    let source = source_of(request)?;
    let mut problems = source.credentials.problems();
    if problems.is_empty() {
        problems = check_api_key(&source.credentials, mirrors).await;
    }
    if !problems.is_empty() {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(ErrorPayload::shown(
            Shown::Credentials,
            "CredentialsValidateFailedError",
            format!("the authorization has problems: {}", listed.join("; ")),
        ));
    }
    let store = SessionStore {
        storage: session.storage(),
        deadline: tokio::time::Instant::now() + STORAGE_TIME_LIMIT,
    };
    if let Err(error) = source.fetch_branch(&git, &store).await {
        return Err(ErrorPayload::shown(
            Shown::Credentials,
            "CredentialsValidateFailedError",
            format!("the repository cannot be read with this authorization: {error}"),
        ));
    }
    session
        .stream(json!({"result": true}))
        .await
        .map_err(|e| ErrorPayload::shown(Shown::ServerUnavailable, "InternalError", e.to_string()))
}

/// With a Knowledge API key: proves it against the API (reading nothing).
async fn check_api_key(
    credentials: &Credentials,
    mirrors: &MirrorProcess,
) -> Vec<CredentialProblem> {
    if credentials.dify_api_key.is_empty() {
        return Vec::new();
    }
    let checked = match mirrors.knowledge_api(credentials.api_url(), &credentials.dify_api_key) {
        Ok(api) => api.check_key().await,
        Err(message) => {
            return vec![CredentialProblem {
                field: "dify_api_url",
                message,
            }]
        }
    };
    match checked {
        Ok(()) => Vec::new(),
        Err(error) => vec![CredentialProblem {
            field: match error.kind {
                ApiErrorKind::Unauthorized => "dify_api_key",
                _ => "dify_api_url",
            },
            message: error.message,
        }],
    }
}
