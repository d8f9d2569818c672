//! Endpoints: the HTTP requests the daemon forwards from `/e/<hook id>/<path>` to a plugin
//! (`invoke_endpoint`: the raw HTTP/1.1 request as Go's `Request.Write` prints it, hex, and
//! the endpoint's settings; `internal/service/endpoint.go` of the daemon), and the answer: one
//! stream chunk `{status, headers, result}` with the body in hex, as the Python SDK's
//! `invoke_endpoint` sends a plain response (`pkg/entities/endpoint_entities`).

use serde_json::{json, Map, Value};

use crate::protocol::{ErrorPayload, Request, Session, Shown};

pub const INVOKE_ENDPOINT: &str = "invoke_endpoint";

/// The most header lines a request may carry.
const MAX_HEADERS: usize = 128;
/// The daemon reads at most 10 MiB of a body.
pub const MAX_BODY: usize = 10 * 1024 * 1024;

/// One forwarded HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRequest {
    pub method: String,
    /// The path under the endpoint (`/push`), without the query.
    pub path: String,
    pub query: String,
    /// In the order they came, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The endpoint's settings, as its group declares them.
    pub settings: Map<String, Value>,
}

impl EndpointRequest {
    /// Reads `raw_http_request` and `settings` of an `invoke_endpoint` request.
    pub fn from_request(request: &Request) -> Result<EndpointRequest, ErrorPayload> {
        let raw = match request.fields.get("raw_http_request") {
            Some(Value::String(hex)) => hex,
            _ => return Err(bad_request("`raw_http_request` must be a hex string")),
        };
        if raw.len() > 2 * (MAX_BODY + 1024 * 1024) {
            return Err(bad_request(
                "the request is larger than the daemon forwards",
            ));
        }
        let bytes = hex::decode(raw).map_err(|_| bad_request("`raw_http_request` is not hex"))?;
        let settings = match request.fields.get("settings") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map.clone(),
            Some(_) => return Err(bad_request("`settings` must be an object")),
        };
        let mut parsed = parse(&bytes).map_err(bad_request)?;
        parsed.settings = settings;
        Ok(parsed)
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A text setting; empty when absent.
    pub fn setting(&self, name: &str) -> String {
        match self.settings.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    }
}

/// Parses an HTTP/1.1 request: request line, headers, and the body its `Content-Length`
/// gives (the daemon always sets it).
pub fn parse(bytes: &[u8]) -> Result<EndpointRequest, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Err("the HTTP request is cut short".into()),
        Err(error) => return Err(format!("the HTTP request cannot be read: {error}")),
    };
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let rest = &bytes[head..];
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.trim().parse::<usize>())
        .transpose()
        .map_err(|_| "the Content-Length is not a number".to_string())?
        .unwrap_or(rest.len());
    if length > MAX_BODY || length > rest.len() {
        return Err("the body is not as long as its Content-Length".into());
    }
    Ok(EndpointRequest {
        method: request.method.unwrap_or_default().to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: rest[..length].to_vec(),
        settings: Map::new(),
    })
}

/// An endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl EndpointResponse {
    /// A plain-text answer.
    pub fn text(status: u16, text: impl Into<String>) -> EndpointResponse {
        EndpointResponse {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: text.into().into_bytes(),
        }
    }

    /// The stream chunk the daemon reads.
    pub fn to_json(&self) -> Value {
        let headers: Map<String, Value> = self
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), Value::String(v.clone())))
            .collect();
        json!({"status": self.status, "headers": headers, "result": hex::encode(&self.body)})
    }

    /// Sends the answer on the session.
    pub async fn send(&self, session: &Session) -> Result<(), ErrorPayload> {
        session.stream(self.to_json()).await.map_err(|e| {
            ErrorPayload::shown(Shown::ServerUnavailable, "InternalError", e.to_string())
        })
    }
}

fn bad_request(message: impl Into<String>) -> ErrorPayload {
    ErrorPayload::shown(Shown::BadRequest, "EndpointRequestError", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A request as Go's `Request.Write` prints what the daemon forwards.
    const FORWARDED: &str = "POST /push?x=1 HTTP/1.1\r\nHost: dify.example.com\r\nUser-Agent: GitHub-Hookshot/1\r\nContent-Length: 11\r\nDify-Hook-Id: 3f2a\r\nX-Github-Event: push\r\n\r\n{\"ref\":\"a\"}";

    #[test]
    fn a_forwarded_request_reads_whole() {
        let request = parse(FORWARDED.as_bytes()).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(
            (request.path.as_str(), request.query.as_str()),
            ("/push", "x=1")
        );
        assert_eq!(request.header("x-github-event"), Some("push"));
        assert_eq!(request.body, b"{\"ref\":\"a\"}");
        let wrapped = Request::parse(json!({"type": "endpoint", "action": INVOKE_ENDPOINT,
            "raw_http_request": hex::encode(FORWARDED), "settings": {"secret": "s"}}))
        .unwrap();
        let request = EndpointRequest::from_request(&wrapped).unwrap();
        assert_eq!(request.setting("secret"), "s");
    }

    #[test]
    fn a_cut_or_lying_request_is_refused() {
        assert!(parse(b"POST /push HTTP/1.1\r\nHost: a\r\n").is_err());
        let longer = FORWARDED.replace("Content-Length: 11", "Content-Length: 99");
        assert!(parse(longer.as_bytes()).is_err());
        let wrapped = Request::parse(json!({"type": "endpoint", "action": INVOKE_ENDPOINT,
            "raw_http_request": "zz"}))
        .unwrap();
        assert!(EndpointRequest::from_request(&wrapped).is_err());
    }

    #[test]
    fn the_answer_has_the_sdk_shape() {
        let answer = EndpointResponse::text(202, "queued").to_json();
        assert_eq!(answer["status"], 202);
        assert_eq!(answer["result"], hex::encode("queued"));
        assert_eq!(
            answer["headers"]["Content-Type"],
            "text/plain; charset=utf-8"
        );
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }
    }
}
