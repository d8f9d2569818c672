//! `validate_datasource_credentials`: checks every credential's format and answers
//! `{"result": true}`, or an error that names each field and its fix.

use serde_json::json;

use crate::credentials::Credentials;
use crate::protocol::{ErrorPayload, Request, Session};

pub async fn handle(request: &Request, session: &Session) -> Result<(), ErrorPayload> {
    let problems = match Credentials::from_request(request.fields.get("credentials")) {
        Ok(credentials) => credentials.problems(),
        Err(problems) => problems,
    };
    if problems.is_empty() {
        session
            .stream(json!({"result": true}))
            .await
            .map_err(|e| ErrorPayload::new("InternalError", e.to_string()))?;
        return Ok(());
    }
    let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let mut error = ErrorPayload::new(
        "CredentialsValidateFailedError",
        format!("the authorization has problems: {}", listed.join("; ")),
    );
    for problem in &problems {
        error = error.with_arg(problem.field, problem.message.clone());
    }
    Err(error)
}
