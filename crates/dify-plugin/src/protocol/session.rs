//! One request's view of the stream: replies, and backwards invocations whose replies the
//! router hands back by `backwards_request_id`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;

use super::storage::Storage;
use super::wire::{invoke_message, session_message, BackwardsEvent, ErrorPayload};
use super::writer::{LineKind, WriteError, Writer};

/// How long a backwards invocation may stay silent, as the SDK's `MAX_INVOCATION_TIMEOUT`.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(250);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("the daemon answered with an error: {0}")]
    Daemon(String),
    #[error("no answer from the daemon within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Waiters for backwards responses, shared by the router and every session of a connection.
#[derive(Clone, Default)]
pub struct Backwards {
    waiters: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<BackwardsEvent>>>>,
    next_id: Arc<AtomicU64>,
}

impl Backwards {
    /// Hands a reply to its waiter; false when nobody waits for that id.
    pub fn deliver(&self, event: BackwardsEvent) -> bool {
        let waiters = self.waiters.lock().expect("backwards waiters lock");
        match waiters.get(&event.backwards_request_id) {
            Some(waiter) => waiter.send(event).is_ok(),
            None => false,
        }
    }

    fn register(&self) -> (String, mpsc::UnboundedReceiver<BackwardsEvent>, WaiterGuard) {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:08x}{:016x}", std::process::id(), n);
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .expect("backwards waiters lock")
            .insert(id.clone(), tx);
        let guard = WaiterGuard {
            backwards: self.clone(),
            id: id.clone(),
        };
        (id, rx, guard)
    }
}

struct WaiterGuard {
    backwards: Backwards,
    id: String,
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if let Ok(mut waiters) = self.backwards.waiters.lock() {
            waiters.remove(&self.id);
        }
    }
}

/// A request in progress. Cloning is cheap; every clone speaks for the same session.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    id: String,
    writer: Writer,
    backwards: Backwards,
    invoke_timeout: Duration,
    failed: AtomicBool,
}

impl Session {
    pub fn new(id: String, writer: Writer, backwards: Backwards, invoke_timeout: Duration) -> Self {
        Session {
            inner: Arc::new(SessionInner {
                id,
                writer,
                backwards,
                invoke_timeout,
                failed: AtomicBool::new(false),
            }),
        }
    }

    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The largest line the transport takes, if it has a cap (stdio does, TCP does not).
    pub fn max_line_len(&self) -> Option<usize> {
        self.inner.writer.max_line_len()
    }

    /// Sends a `stream` message carrying `data`.
    pub async fn stream(&self, data: Value) -> Result<(), WriteError> {
        let message = session_message(self.id(), "stream", data);
        self.send_session_line(serde_json::to_vec(&message).expect("Value serializes"))
            .await
    }

    /// Sends a `stream` message whose `data` is already serialized JSON, wrapping the
    /// envelope around it in place, so a large result is serialized and held once.
    pub async fn stream_serialized(&self, data: Vec<u8>) -> Result<(), WriteError> {
        let (head, tail) = self.stream_envelope();
        let mut line = data;
        line.reserve_exact(head.len() + tail.len());
        line.splice(0..0, head.into_bytes());
        line.extend_from_slice(tail.as_bytes());
        self.send_session_line(line).await
    }

    /// The length of the line `stream_serialized` writes for `data_len` bytes of data.
    pub fn stream_line_len(&self, data_len: usize) -> usize {
        let (head, tail) = self.stream_envelope();
        head.len() + data_len + tail.len()
    }

    fn stream_envelope(&self) -> (String, &'static str) {
        let id = serde_json::to_string(self.id()).expect("a string serializes");
        (
            format!(r#"{{"event":"session","session_id":{id},"data":{{"type":"stream","data":"#),
            "}}",
        )
    }

    /// Ends the session successfully.
    pub async fn end(&self) -> Result<(), WriteError> {
        let message = session_message(self.id(), "end", serde_json::json!({}));
        self.send_session_line(serde_json::to_vec(&message).expect("Value serializes"))
            .await
    }

    /// Ends the session with an error.
    pub async fn fail(&self, error: &ErrorPayload) -> Result<(), WriteError> {
        let message = session_message(self.id(), "error", error.to_json());
        self.send_session_line(serde_json::to_vec(&message).expect("Value serializes"))
            .await
    }

    /// True once the writer has failed this session in place of an oversize line.
    pub fn has_failed(&self) -> bool {
        self.inner.failed.load(Ordering::SeqCst)
    }

    async fn send_session_line(&self, line: Vec<u8>) -> Result<(), WriteError> {
        if self.has_failed() {
            return Err(WriteError::SessionFailed);
        }
        let result = self
            .inner
            .writer
            .send_line(line, Some(self.id()), LineKind::Session)
            .await;
        if let Err(WriteError::LineTooLong { .. }) = result {
            self.inner.failed.store(true, Ordering::SeqCst);
        }
        result
    }

    /// A backwards invocation: sends `invoke` and collects the `data` of every `response`
    /// event until `end`.
    pub async fn invoke(
        &self,
        invoke_type: &str,
        request: Value,
    ) -> Result<Vec<Value>, InvokeError> {
        let (request_id, mut replies, _guard) = self.inner.backwards.register();
        let message = invoke_message(self.id(), &request_id, invoke_type, request);
        self.inner
            .writer
            .send(&message, Some(self.id()), LineKind::Invoke)
            .await?;
        let mut responses = Vec::new();
        loop {
            let timeout = self.inner.invoke_timeout;
            let event = match tokio::time::timeout(timeout, replies.recv()).await {
                Err(_) => return Err(InvokeError::Timeout(timeout)),
                Ok(None) => return Err(InvokeError::Write(WriteError::Closed)),
                Ok(Some(event)) => event,
            };
            match event.event.as_str() {
                "response" => responses.push(event.data),
                "error" => return Err(InvokeError::Daemon(event.message)),
                "end" => return Ok(responses),
                other => {
                    return Err(InvokeError::Daemon(format!(
                        "unknown backwards event `{other}`"
                    )))
                }
            }
        }
    }

    /// The plugin storage of this workspace, reached through this session.
    pub fn storage(&self) -> Storage {
        Storage::new(self.clone())
    }
}
