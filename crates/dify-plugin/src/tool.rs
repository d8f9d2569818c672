//! Tool providers: the two requests the daemon sends them (`validate_tool_credentials`,
//! `invoke_tool`, as `internal/types/entities/requests/tool.go` of the daemon and
//! `ToolActions` of the Python SDK define them) and the messages a tool streams back
//! (`ToolInvokeMessage`: `{"type", "message", "meta"}`, one per stream chunk).

use serde_json::{json, Map, Value};

use crate::protocol::{ErrorPayload, Request, Session, Shown};

pub const VALIDATE_TOOL_CREDENTIALS: &str = "validate_tool_credentials";
pub const INVOKE_TOOL: &str = "invoke_tool";

/// What an `invoke_tool` (or `validate_tool_credentials`) request carries.
#[derive(Debug, Clone)]
pub struct ToolRequest {
    pub provider: String,
    /// Empty for `validate_tool_credentials`.
    pub tool: String,
    pub parameters: Map<String, Value>,
    pub credentials: Map<String, Value>,
}

impl ToolRequest {
    /// Reads `provider`, `tool`, `tool_parameters` and `credentials`; absent objects are empty.
    pub fn from_request(request: &Request) -> Result<Self, ErrorPayload> {
        let text = |key: &str| match request.fields.get(key) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(bad_request(format!("`{key}` must be a string"))),
        };
        let object = |key: &str| match request.fields.get(key) {
            None | Some(Value::Null) => Ok(Map::new()),
            Some(Value::Object(map)) => Ok(map.clone()),
            Some(_) => Err(bad_request(format!("`{key}` must be an object"))),
        };
        Ok(ToolRequest {
            provider: text("provider")?,
            tool: text("tool")?,
            parameters: object("tool_parameters")?,
            credentials: object("credentials")?,
        })
    }

    /// A text parameter, trimmed; empty when absent or null.
    pub fn text(&self, name: &str) -> Result<String, ErrorPayload> {
        match self.parameters.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            Some(_) => Err(bad_request(format!("the parameter `{name}` must be text"))),
        }
    }

    /// A boolean parameter (Dify sends booleans, or "true"/"false" from some forms).
    pub fn flag(&self, name: &str) -> Result<bool, ErrorPayload> {
        match self.parameters.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim() {
                "" | "false" | "0" | "no" => Ok(false),
                "true" | "1" | "yes" => Ok(true),
                _ => Err(bad_request(format!(
                    "the parameter `{name}` must be true or false"
                ))),
            },
            Some(_) => Err(bad_request(format!(
                "the parameter `{name}` must be true or false"
            ))),
        }
    }
}

fn bad_request(message: String) -> ErrorPayload {
    ErrorPayload::shown(Shown::BadRequest, "ToolRequestError", message)
}

/// One message of a tool's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolMessage {
    /// Shown to the user, and the `text` output of a workflow's tool node.
    Text(String),
    /// The `json` output of a tool node; what an agent reads best.
    Json(Value),
    /// A named output variable of the tool node (declared in `output_schema`).
    Variable { name: String, value: Value },
}

impl ToolMessage {
    pub fn to_json(&self) -> Value {
        match self {
            ToolMessage::Text(text) => {
                json!({"type": "text", "message": {"text": text}, "meta": null})
            }
            ToolMessage::Json(object) => {
                json!({"type": "json", "message": {"json_object": object}, "meta": null})
            }
            ToolMessage::Variable { name, value } => json!({
                "type": "variable",
                "message": {"variable_name": name, "variable_value": value, "stream": false},
                "meta": null,
            }),
        }
    }

    /// Streams this message on the session.
    pub async fn send(&self, session: &Session) -> Result<(), ErrorPayload> {
        session.stream(self.to_json()).await.map_err(|e| {
            ErrorPayload::shown(Shown::ServerUnavailable, "InternalError", e.to_string())
        })
    }
}

/// The answer to a successful `validate_tool_credentials`.
pub async fn credentials_valid(session: &Session) -> Result<(), ErrorPayload> {
    session
        .stream(json!({"result": true}))
        .await
        .map_err(|e| ErrorPayload::shown(Shown::ServerUnavailable, "InternalError", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_sdk_shape() {
        assert_eq!(
            ToolMessage::Text("hi".into()).to_json(),
            json!({"type": "text", "message": {"text": "hi"}, "meta": null})
        );
        assert_eq!(
            ToolMessage::Json(json!({"a": 1})).to_json()["message"]["json_object"],
            json!({"a": 1})
        );
        let variable = ToolMessage::Variable {
            name: "changed".into(),
            value: json!(3),
        }
        .to_json();
        assert_eq!(variable["type"], "variable");
        assert_eq!(variable["message"]["variable_name"], "changed");
    }

    #[test]
    fn parameters_are_read_leniently_but_typed() {
        let request = Request::parse(json!({
            "type": "tool", "action": "invoke_tool", "provider": "p", "tool": "t",
            "tool_parameters": {"apps": " a, b ", "publish": "true", "bad": [1]},
        }))
        .unwrap();
        let tool = ToolRequest::from_request(&request).unwrap();
        assert_eq!(tool.text("apps").unwrap(), "a, b");
        assert!(tool.flag("publish").unwrap());
        assert!(!tool.flag("absent").unwrap());
        assert!(tool.text("bad").is_err());
        assert!(tool.credentials.is_empty());
    }
}
