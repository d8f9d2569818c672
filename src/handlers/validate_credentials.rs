//! `validate_datasource_credentials`: checks every credential's format, and a Knowledge API
//! key against the API, and answers `{"result": true}`, or an error that names each field
//! and its fix.

use serde_json::json;

use super::MirrorProcess;
use crate::dify::knowledge::ApiErrorKind;
use crate::repository::credentials::{CredentialProblem, Credentials};
use dify_plugin::protocol::{ErrorPayload, Request, Session, Shown};

pub async fn handle(
    request: &Request,
    session: &Session,
    mirrors: &MirrorProcess,
) -> Result<(), ErrorPayload> {
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
