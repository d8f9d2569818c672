//! Plugin storage (`get`, `set`, `exist`, `del`) as backwards invocations over the session's
//! own stream (`docs/protocol.md` §6). Values travel hex-encoded.

use serde_json::{json, Value};

use super::session::{InvokeError, Session};
use super::writer::WriteError;

/// The daemon rejects keys longer than this many bytes.
pub const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },
    #[error("storage value for {key:?} is too large for one message ({len} bytes); split it")]
    ValueTooLarge { key: String, len: usize },
    #[error("plugin storage failed: {0}")]
    Daemon(String),
    #[error("plugin storage did not answer: {0}")]
    Unavailable(String),
    #[error("plugin storage gave an answer this plugin cannot read: {0}")]
    Malformed(String),
}

impl From<InvokeError> for StorageError {
    fn from(error: InvokeError) -> Self {
        match error {
            InvokeError::Daemon(message) => StorageError::Daemon(message),
            other => StorageError::Unavailable(other.to_string()),
        }
    }
}

/// Checks a key against the daemon's rules before it is sent: at most 256 bytes, and after
/// `path.Clean` no `..`, `//` or `\` (path-traversal check); also no leading `/` and no
/// control characters, which would map to odd object-store paths.
pub fn check_key(key: &str) -> Result<(), StorageError> {
    let reason = if key.is_empty() {
        Some("it is empty")
    } else if key.len() > MAX_KEY_LEN {
        Some("it is longer than 256 bytes")
    } else if key.contains("..") || key.contains("//") || key.contains('\\') {
        Some("it contains `..`, `//` or `\\`, which the daemon treats as path traversal")
    } else if key.starts_with('/') {
        Some("it starts with `/`")
    } else if key.chars().any(char::is_control) {
        Some("it contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Storage as seen from one session.
#[derive(Clone)]
pub struct Storage {
    session: Session,
}

impl Storage {
    pub fn new(session: Session) -> Self {
        Storage { session }
    }

    /// The stored value, or `None` when the key was never set.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        match self.call(json!({"opt": "get", "key": key})).await {
            Ok(data) => {
                let hex_value = data
                    .as_str()
                    .ok_or_else(|| StorageError::Malformed(format!("get {key}: {data}")))?;
                hex::decode(hex_value)
                    .map(Some)
                    .map_err(|e| StorageError::Malformed(format!("get {key}: {e}")))
            }
            // The daemon answers a missing key with a load error; ask whether it exists before
            // reading that as "never set", so a storage outage is not mistaken for no state.
            Err(StorageError::Daemon(message)) => match self.exist(key).await? {
                false => Ok(None),
                true => Err(StorageError::Daemon(message)),
            },
            Err(other) => Err(other),
        }
    }

    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        if self.max_value_len().is_some_and(|max| value.len() > max) {
            return Err(StorageError::ValueTooLarge {
                key: key.to_string(),
                len: value.len(),
            });
        }
        let request = json!({"opt": "set", "key": key, "value": hex::encode(value)});
        self.call(request).await.map(drop)
    }

    pub async fn exist(&self, key: &str) -> Result<bool, StorageError> {
        check_key(key)?;
        let data = self.call(json!({"opt": "exist", "key": key})).await?;
        data.as_bool()
            .ok_or_else(|| StorageError::Malformed(format!("exist {key}: {data}")))
    }

    pub async fn del(&self, key: &str) -> Result<(), StorageError> {
        check_key(key)?;
        self.call(json!({"opt": "del", "key": key})).await.map(drop)
    }

    /// The largest value `set` can carry in one message on this transport.
    pub fn max_value_len(&self) -> Option<usize> {
        // Envelope, ids and key take well under 1 KiB; hex doubles the value.
        self.session
            .max_line_len()
            .map(|line| line.saturating_sub(1024) / 2)
    }

    /// One invocation; returns the `data` field of its `response`.
    async fn call(&self, request: Value) -> Result<Value, StorageError> {
        let responses =
            self.session
                .invoke("storage", request)
                .await
                .map_err(|error| match error {
                    InvokeError::Write(WriteError::LineTooLong { len, .. }) => {
                        StorageError::Unavailable(format!("request line of {len} bytes refused"))
                    }
                    other => other.into(),
                })?;
        let response = responses
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::Malformed("no response before end".into()))?;
        response
            .get("data")
            .cloned()
            .ok_or_else(|| StorageError::Malformed(format!("response without data: {response}")))
    }
}
