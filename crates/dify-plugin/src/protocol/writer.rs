//! The one task that owns the outgoing stream: whole lines only, and no line that would reach
//! the daemon's line cap (an oversize line makes the daemon kill the whole process).

use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::wire::{session_message, ErrorPayload, Shown};

/// What a line is, which decides what happens when it is too long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Heartbeat,
    /// A `stream`, `end` or `error` session message: if it is too long the session is failed
    /// with an `error` in its place.
    Session,
    /// A backwards invocation: if it is too long only the caller is told.
    Invoke,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("a message of {len} bytes would reach the daemon's line limit of {cap} bytes")]
    LineTooLong { len: usize, cap: usize },
    #[error("the session has already failed")]
    SessionFailed,
    #[error("the connection to the daemon is closed")]
    Closed,
}

struct Outgoing {
    line: Vec<u8>,
    session_id: Option<String>,
    kind: LineKind,
    ack: Option<oneshot::Sender<Result<(), WriteError>>>,
}

/// A cheap handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Outgoing>,
    line_cap: Option<usize>,
}

impl Writer {
    /// Starts the writer task on `out`. `line_cap` is the daemon's maximum line size including
    /// the newline (`None` where the transport has no cap).
    pub fn spawn<W>(out: W, line_cap: Option<usize>) -> (Writer, JoinHandle<std::io::Result<()>>)
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_lines(out, rx, line_cap));
        (Writer { tx, line_cap }, task)
    }

    /// The largest line (without its newline) the transport accepts, if it has a limit.
    pub fn max_line_len(&self) -> Option<usize> {
        self.line_cap.map(|cap| cap.saturating_sub(1))
    }

    /// Serializes `message` and waits until it has been written.
    pub async fn send(
        &self,
        message: &Value,
        session_id: Option<&str>,
        kind: LineKind,
    ) -> Result<(), WriteError> {
        let line = serde_json::to_vec(message).expect("a serde_json::Value always serializes");
        self.send_line(line, session_id, kind).await
    }

    /// Writes one already serialized message and waits until it is on the stream.
    pub async fn send_line(
        &self,
        line: Vec<u8>,
        session_id: Option<&str>,
        kind: LineKind,
    ) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        let outgoing = Outgoing {
            line,
            session_id: session_id.map(str::to_owned),
            kind,
            ack: Some(ack),
        };
        self.tx.send(outgoing).map_err(|_| WriteError::Closed)?;
        done.await.unwrap_or(Err(WriteError::Closed))
    }

    /// Queues a line without waiting for it (heartbeats).
    pub fn post(&self, message: &Value, kind: LineKind) {
        let line = serde_json::to_vec(message).expect("a serde_json::Value always serializes");
        let _ = self.tx.send(Outgoing {
            line,
            session_id: None,
            kind,
            ack: None,
        });
    }
}

async fn write_lines<W>(
    mut out: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    line_cap: Option<usize>,
) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while let Some(message) = rx.recv().await {
        let result = match line_cap {
            Some(cap) if message.line.len() >= cap => {
                let refused = WriteError::LineTooLong {
                    len: message.line.len() + 1,
                    cap,
                };
                if let (LineKind::Session, Some(session_id)) =
                    (message.kind, message.session_id.as_deref())
                {
                    tracing::warn!("refused an oversize line: {refused}");
                    let error = serde_json::to_vec(&oversize_error(session_id, &refused))?;
                    // Whatever the input, no line reaches the cap: not even this one.
                    if error.len() < cap {
                        write_line(&mut out, &error).await?;
                    }
                }
                Err(refused)
            }
            _ => {
                write_line(&mut out, &message.line).await?;
                Ok(())
            }
        };
        if let Some(ack) = message.ack {
            let _ = ack.send(result);
        }
    }
    Ok(())
}

async fn write_line<W: AsyncWrite + Unpin>(out: &mut W, line: &[u8]) -> std::io::Result<()> {
    out.write_all(line).await?;
    out.write_all(b"\n").await?;
    out.flush().await
}

fn oversize_error(session_id: &str, refused: &WriteError) -> Value {
    let payload = ErrorPayload::shown(
        Shown::BadRequest,
        "ResponseTooLargeError",
        format!(
            "{refused}; ask for less in one call (fewer apps or files) or ask the operator to \
             raise PLUGIN_RUNTIME_MAX_BUFFER_SIZE on the plugin daemon"
        ),
    );
    session_message(session_id, "error", payload.to_json())
}
