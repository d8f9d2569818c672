//! The JSON shapes that cross the daemon ⇄ plugin stream (`docs/protocol.md` §4–6).

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The daemon validates `ErrorResponse.Args` with `max=10`; more keys and the error is ignored.
pub const MAX_ERROR_ARGS: usize = 10;

/// One line from the daemon: `{"session_id", ..., "event", "data"}`.
#[derive(Debug, Deserialize)]
pub struct IncomingLine {
    #[serde(default)]
    pub session_id: Option<String>,
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// `data` of a `backwards_response` line.
#[derive(Debug, Clone, Deserialize)]
pub struct BackwardsEvent {
    pub backwards_request_id: String,
    pub event: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub data: Value,
}

/// A request's `data` with the routing fields taken out; `fields` keeps the rest
/// (`credentials`, `datasource_parameters`, `provider`, ...).
#[derive(Debug, Clone)]
pub struct Request {
    pub kind: String,
    pub action: String,
    pub fields: Map<String, Value>,
}

impl Request {
    /// Splits a request's `data` into type, action and the remaining fields.
    pub fn parse(data: Value) -> Result<Request, String> {
        let Value::Object(mut fields) = data else {
            return Err("request data must be a JSON object".into());
        };
        let kind = take_string(&mut fields, "type")?;
        let action = take_string(&mut fields, "action")?;
        Ok(Request {
            kind,
            action,
            fields,
        })
    }
}

fn take_string(fields: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match fields.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None => Err(format!("request has no `{key}`")),
        Some(other) => Err(format!(
            "request field `{key}` must be a string, not {}",
            json_kind(&other)
        )),
    }
}

/// The JSON type name of a value, for error messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The kinds of error Dify shows a user as text. Dify unwraps only the error types it knows
/// (`core/plugin/impl/base.py`, `_handle_plugin_daemon_error`: `InvokeBadRequestError`, …,
/// `CredentialsValidateFailedError`) and shows the raw JSON of any other, so every error a
/// plugin sends is one of these, with its own precise name in `args.error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Bad parameters, a missing repository or branch, a refused input, a setting to fix.
    BadRequest,
    /// A server refused the credentials.
    Authorization,
    /// A server cannot be reached.
    Connection,
    /// A server (or the plugin's own storage) failed or is busy.
    ServerUnavailable,
    /// A server asks to slow down.
    RateLimit,
    /// The fields of an authorization are wrong (checked before any server is asked).
    Credentials,
}

impl Shown {
    /// Dify's name of the error type.
    pub fn error_type(self) -> &'static str {
        match self {
            Shown::BadRequest => "InvokeBadRequestError",
            Shown::Authorization => "InvokeAuthorizationError",
            Shown::Connection => "InvokeConnectionError",
            Shown::ServerUnavailable => "InvokeServerUnavailableError",
            Shown::RateLimit => "InvokeRateLimitError",
            Shown::Credentials => "CredentialsValidateFailedError",
        }
    }
}

/// A session `error` payload: `{error_type, message, args}` with at most ten `args`.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorPayload {
    pub error_type: String,
    pub message: String,
    pub args: Map<String, Value>,
}

impl ErrorPayload {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorPayload {
            error_type: error_type.into(),
            message: message.into(),
            args: Map::new(),
        }
    }

    /// An error Dify shows as `message`: of the Dify type `kind` picks, with the plugin's own
    /// name of the error (`GitRepositoryNotFoundError`) in `args.error`.
    pub fn shown(kind: Shown, name: &str, message: impl Into<String>) -> Self {
        ErrorPayload::new(kind.error_type(), message).with_arg("error", name)
    }

    /// Adds one `args` entry; entries past the daemon's limit of ten are dropped.
    pub fn with_arg(mut self, key: &str, value: impl Into<Value>) -> Self {
        if self.args.len() < MAX_ERROR_ARGS || self.args.contains_key(key) {
            self.args.insert(key.to_string(), value.into());
        }
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "error_type": self.error_type,
            "message": self.message,
            "args": self.args,
        })
    }
}

/// `{"event":"heartbeat","session_id":null,"data":{}}`
pub fn heartbeat() -> Value {
    json!({"event": "heartbeat", "session_id": null, "data": {}})
}

/// A session message of `kind` (`stream`, `end`, `error`, `invoke`) carrying `data`.
pub fn session_message(session_id: &str, kind: &str, data: Value) -> Value {
    json!({
        "event": "session",
        "session_id": session_id,
        "data": {"type": kind, "data": data},
    })
}

/// A backwards invocation (`invoke`) of `invoke_type` with its `request`.
pub fn invoke_message(
    session_id: &str,
    backwards_request_id: &str,
    invoke_type: &str,
    request: Value,
) -> Value {
    session_message(
        session_id,
        "invoke",
        json!({
            "type": invoke_type,
            "backwards_request_id": backwards_request_id,
            "request": request,
        }),
    )
}
