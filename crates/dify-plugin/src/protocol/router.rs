//! The one reader of the incoming stream: `request` lines become a task per session,
//! `backwards_response` lines go to whoever waits for them, anything else is answered or
//! logged without ever stopping the loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::session::{Backwards, Session};
use super::wire::{BackwardsEvent, ErrorPayload, IncomingLine, Request, Shown};
use super::writer::Writer;

/// Lines longer than this are skipped (storage replies are the largest legitimate lines, and
/// on stdio they are capped at 5 MiB by the daemon's own limits).
pub const MAX_INCOMING_LINE: usize = 64 * 1024 * 1024;
/// The daemon's session ids are UUIDs; a longer one cannot be answered within the line cap.
pub const MAX_SESSION_ID: usize = 256;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), ErrorPayload>> + Send>>;

/// What serves requests. The router ends each session: `end` after `Ok`, `error` after `Err`.
pub trait RequestHandler: Send + Sync + 'static {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture;
}

#[derive(Debug, Clone)]
pub struct RouterConfig {
    pub invoke_timeout: Duration,
    /// On TCP the daemon's only non-JSON lines are its refusals (`docs/protocol.md` §3.3).
    pub non_json_is_fatal: bool,
}

/// Why the router stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum RouterEnd {
    EndOfStream,
    /// A plain-text line from the daemon, which is how it refuses a registration.
    DaemonSaid(String),
}

pub async fn route<R>(
    mut reader: R,
    writer: Writer,
    handler: Arc<dyn RequestHandler>,
    config: RouterConfig,
) -> std::io::Result<RouterEnd>
where
    R: AsyncBufRead + Unpin,
{
    let backwards = Backwards::default();
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line, MAX_INCOMING_LINE).await? {
            None => return Ok(RouterEnd::EndOfStream),
            Some(LineRead::TooLong(len)) => {
                tracing::warn!(
                    "skipped an incoming line of {len} bytes (limit {MAX_INCOMING_LINE})"
                );
            }
            Some(LineRead::Line) => {
                while line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let context = Context {
                    writer: &writer,
                    backwards: &backwards,
                    handler: &handler,
                    config: &config,
                };
                let value = match serde_json::from_slice::<Value>(&line) {
                    Ok(value) => value,
                    Err(_) if config.non_json_is_fatal => {
                        let text = String::from_utf8_lossy(&line).trim().to_string();
                        return Ok(RouterEnd::DaemonSaid(text));
                    }
                    Err(error) => {
                        // Answer on the session when its id can still be read.
                        context.refuse(
                            readable_session_id(&line),
                            format!("the line is not valid JSON ({error})"),
                        );
                        continue;
                    }
                };
                context.dispatch(value);
            }
        }
    }
}

struct Context<'a> {
    writer: &'a Writer,
    backwards: &'a Backwards,
    handler: &'a Arc<dyn RequestHandler>,
    config: &'a RouterConfig,
}

impl Context<'_> {
    fn dispatch(&self, value: Value) {
        let session_id = value
            .get("session_id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        if session_id
            .as_ref()
            .is_some_and(|id| id.len() > MAX_SESSION_ID)
        {
            tracing::warn!("skipped a line whose session_id is over {MAX_SESSION_ID} bytes");
            return;
        }
        let incoming = match serde_json::from_value::<IncomingLine>(value) {
            Ok(incoming) => incoming,
            Err(error) => {
                self.refuse(
                    session_id,
                    format!("the message is not a daemon event: {error}"),
                );
                return;
            }
        };
        match incoming.event.as_str() {
            "request" => self.start_session(session_id, incoming.data),
            "backwards_response" => self.deliver_backwards(incoming.data),
            other => self.refuse(
                session_id,
                format!("unknown event `{other}`; expected `request` or `backwards_response`"),
            ),
        }
    }

    fn start_session(&self, session_id: Option<String>, data: Value) {
        let Some(session_id) = session_id else {
            tracing::warn!("skipped a request without a session_id");
            return;
        };
        let session = self.session(session_id);
        match Request::parse(data) {
            Ok(request) => {
                tracing::debug!(session = session.id(), action = %request.action, "request");
                let work = self.handler.handle(request, session.clone());
                tokio::spawn(run_session(session, work));
            }
            Err(problem) => {
                let error = ErrorPayload::shown(Shown::BadRequest, "MalformedRequest", problem);
                tokio::spawn(async move { session.fail(&error).await });
            }
        }
    }

    fn deliver_backwards(&self, data: Value) {
        match serde_json::from_value::<BackwardsEvent>(data) {
            Ok(event) => {
                let id = event.backwards_request_id.clone();
                if !self.backwards.deliver(event) {
                    tracing::debug!("backwards response {id} has no waiter");
                }
            }
            Err(error) => tracing::warn!("skipped a malformed backwards_response: {error}"),
        }
    }

    /// Answers a line that cannot be served with a session `error`, or logs it when there is
    /// no session to answer.
    fn refuse(&self, session_id: Option<String>, problem: String) {
        match session_id {
            Some(session_id) => {
                let session = self.session(session_id);
                let error = ErrorPayload::shown(Shown::BadRequest, "UnservableLine", problem);
                tokio::spawn(async move { session.fail(&error).await });
            }
            None => tracing::warn!("skipped an incoming line: {problem}"),
        }
    }

    fn session(&self, session_id: String) -> Session {
        Session::new(
            session_id,
            self.writer.clone(),
            self.backwards.clone(),
            self.config.invoke_timeout,
        )
    }
}

/// The `"session_id":"…"` of a line that is not valid JSON, when it can be read plainly.
fn readable_session_id(line: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(&line[..line.len().min(64 * 1024)]);
    let after = &text[text.find("\"session_id\"")? + "\"session_id\"".len()..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let id = &value[..value.find('"')?];
    let plain = !id.is_empty()
        && id.len() <= MAX_SESSION_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plain.then(|| id.to_string())
}

/// Runs one request to its single `end` or `error`, whatever the handler does (a panic
/// included).
async fn run_session(session: Session, work: HandlerFuture) {
    let outcome = match tokio::spawn(work).await {
        Ok(outcome) => outcome,
        Err(join_error) => {
            // A panic's text may quote its input (a secret among it): never shown.
            let what = match join_error.is_panic() {
                true => "panicked",
                false => "was cancelled",
            };
            tracing::error!(session = session.id(), "the request handler {what}");
            Err(ErrorPayload::shown(
                Shown::ServerUnavailable,
                "InternalError",
                "the plugin failed while handling this request; the plugin log has the details",
            ))
        }
    };
    if session.has_failed() {
        return;
    }
    let _ = match outcome {
        Ok(()) => session.end().await,
        Err(error) => session.fail(&error).await,
    };
}

enum LineRead {
    Line,
    TooLong(usize),
}

/// Reads up to the next `\n` into `line` (without it). A line over `max` bytes is consumed
/// and reported by length instead of being kept in memory.
async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<LineRead>> {
    line.clear();
    let mut seen = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match seen {
                0 => None,
                n if n > max => Some(LineRead::TooLong(n)),
                _ => Some(LineRead::Line),
            });
        }
        let (chunk_len, consumed, complete) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (available.len(), available.len(), false),
        };
        seen += chunk_len;
        if seen <= max {
            line.extend_from_slice(&available[..chunk_len]);
        } else {
            line.clear();
        }
        reader.consume(consumed);
        if complete {
            return Ok(Some(if seen > max {
                LineRead::TooLong(seen)
            } else {
                LineRead::Line
            }));
        }
    }
}
