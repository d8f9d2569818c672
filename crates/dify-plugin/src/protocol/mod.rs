//! The daemon ⇄ plugin protocol: framing, the two transports, routing, heartbeats and the
//! backwards invocations (plugin storage) a handler can make.

pub mod heartbeat;
pub mod router;
pub mod session;
pub mod stdio;
pub mod storage;
pub mod tcp;
pub mod wire;
pub mod writer;

use std::time::Duration;

pub use router::{HandlerFuture, RequestHandler};
pub use session::Session;
pub use wire::{ErrorPayload, Request, Shown};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Connect(String),
    #[error("the daemon refused the plugin: {0}")]
    Refused(String),
    #[error("the connection to the daemon dropped: {0}")]
    Dropped(String),
    #[error("reading from the daemon failed: {0}")]
    Input(std::io::Error),
    #[error("writing to the daemon failed: {0}")]
    Output(std::io::Error),
}

/// Timings shared by both transports.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub heartbeat_interval: Duration,
    pub invoke_timeout: Duration,
    pub reconnect_delay: Duration,
}

impl ServeSettings {
    /// Reads `HEARTBEAT_INTERVAL` and `MAX_INVOCATION_TIMEOUT` (seconds), the Python SDK's
    /// names, falling back to its defaults.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        // Out-of-range values are clamped (with a warning), never a panic at start.
        let seconds = |name: &str, min: f64, max: f64| {
            let value = var(name)?.trim().parse::<f64>().ok()?;
            if !value.is_finite() || value <= 0.0 {
                tracing::warn!("{name}={value} is not a positive number of seconds; ignored");
                return None;
            }
            let clamped = value.clamp(min, max);
            if clamped != value {
                tracing::warn!("{name}={value} is out of range; using {clamped} s");
            }
            Some(Duration::from_secs_f64(clamped))
        };
        ServeSettings {
            heartbeat_interval: seconds("HEARTBEAT_INTERVAL", 0.1, 300.0)
                .unwrap_or(heartbeat::DEFAULT_INTERVAL),
            invoke_timeout: seconds("MAX_INVOCATION_TIMEOUT", 0.1, 3600.0)
                .unwrap_or(session::DEFAULT_INVOKE_TIMEOUT),
            reconnect_delay: Duration::from_secs(2),
        }
    }
}
