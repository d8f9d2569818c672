//! Remote debugging: dial the daemon's debug port, register (handshake, manifest, datasource
//! or tool declaration, icons, end), then serve requests like stdio (`docs/protocol.md` §3.3).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::router::{route, RequestHandler, RouterConfig, RouterEnd};
use super::writer::Writer;
use super::{heartbeat, ServeError, ServeSettings};
use crate::declaration::PluginDeclaration;

/// The SDK's default `REMOTE_INSTALL_PORT`.
pub const DEFAULT_PORT: u16 = 5003;
/// The SDK sends icons in chunks of this many raw bytes.
const ASSET_CHUNK: usize = 8192;
/// How many times a failed or dropped connection is tried again before giving up.
const RECONNECT_ATTEMPTS: u32 = 3;

/// Where the daemon's debug port is and the key to register with.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    pub host: String,
    pub port: u16,
    pub key: String,
}

impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} (key hidden)", self.host, self.port)
    }
}

impl RemoteTarget {
    /// Reads `REMOTE_INSTALL_URL` (`host:port` or a URL) or `REMOTE_INSTALL_HOST` and
    /// `REMOTE_INSTALL_PORT`, and `REMOTE_INSTALL_KEY`, the names the Python SDK uses.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ServeError> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let key = var("REMOTE_INSTALL_KEY").ok_or_else(|| {
            ServeError::Config(
                "REMOTE_INSTALL_KEY is not set: copy the debug key from Dify's plugin page \
                 (the bug icon) into the environment or a .env file"
                    .into(),
            )
        })?;
        let (host, port) = match var("REMOTE_INSTALL_URL") {
            Some(url) => parse_address(&url)?,
            None => {
                let host = var("REMOTE_INSTALL_HOST").unwrap_or_else(|| "localhost".into());
                let port = match var("REMOTE_INSTALL_PORT") {
                    Some(port) => port.parse().map_err(|_| {
                        ServeError::Config(format!(
                            "REMOTE_INSTALL_PORT must be a port number, not {port:?}"
                        ))
                    })?,
                    None => DEFAULT_PORT,
                };
                (host, port)
            }
        };
        Ok(RemoteTarget { host, port, key })
    }
}

/// `host:port`, `host`, or `scheme://host:port/...` into host and port.
fn parse_address(url: &str) -> Result<(String, u16), ServeError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let bad = || {
        ServeError::Config(format!(
            "REMOTE_INSTALL_URL must look like host:port (for example localhost:5003), not {url:?}"
        ))
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
            (host, port.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority, DEFAULT_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

/// Reads `KEY=VALUE` lines of a `.env` file (comments, blank lines, `export ` and quotes
/// allowed). Variables already in the environment win, as with python-dotenv.
pub fn read_dotenv(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (name, value) = line.split_once('=')?;
            let value = value.trim();
            let value = match value.chars().next() {
                Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or_default(),
                _ => value.split(" #").next().unwrap_or_default().trim(),
            };
            Some((name.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// The registration frames in the order the daemon expects, nothing else before `end`.
pub fn registration_frames(plugin: &PluginDeclaration, key: &str) -> Vec<Value> {
    let mut frames = vec![
        json!({"type": "handshake", "data": {"key": key}}),
        json!({"type": "manifest_declaration", "data": plugin.manifest_json()}),
        json!({"type": plugin.kind().declaration_frame(), "data": [plugin.provider_json()]}),
    ];
    if let Some(group) = plugin.endpoints_json() {
        frames.push(json!({"type": "endpoint_declaration", "data": [group]}));
    }
    let engine = base64::engine::general_purpose::STANDARD;
    for (name, bytes) in plugin.assets() {
        let chunks: Vec<&[u8]> = bytes.chunks(ASSET_CHUNK).collect();
        let last = chunks.len().saturating_sub(1);
        for (i, chunk) in chunks.iter().enumerate() {
            frames.push(json!({"type": "asset_chunk", "data": {
                "filename": name, "data": engine.encode(chunk), "end": i == last,
            }}));
        }
    }
    frames.push(json!({"type": "end", "data": {}}));
    frames
}

pub async fn serve(
    handler: Arc<dyn RequestHandler>,
    plugin: &PluginDeclaration,
    target: &RemoteTarget,
    settings: &ServeSettings,
) -> Result<(), ServeError> {
    let mut failures = 0;
    loop {
        match serve_connection(handler.clone(), plugin, target, settings).await {
            Ok(()) => return Ok(()),
            Err(refused @ ServeError::Refused(_)) => return Err(refused),
            Err(error) if failures < RECONNECT_ATTEMPTS => {
                failures += 1;
                let pause = settings.reconnect_delay * 2u32.pow(failures - 1);
                tracing::warn!(
                    "{error}; connecting again in {pause:?} ({failures}/{RECONNECT_ATTEMPTS})"
                );
                tokio::time::sleep(pause).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// One connection: register, then serve until the daemon closes it.
async fn serve_connection(
    handler: Arc<dyn RequestHandler>,
    plugin: &PluginDeclaration,
    target: &RemoteTarget,
    settings: &ServeSettings,
) -> Result<(), ServeError> {
    let address = format!("{}:{}", target.host, target.port);
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&address))
        .await
        .map_err(|_| ServeError::Connect(format!("no answer from {address} within 10 s")))?
        .map_err(|e| ServeError::Connect(format!("cannot reach the daemon at {address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (read_half, mut write_half) = stream.into_split();
    let mut reader = BufReader::new(read_half);

    for frame in registration_frames(plugin, &target.key) {
        let mut line = serde_json::to_vec(&frame).expect("Value serializes");
        line.push(b'\n');
        if let Err(error) = write_half.write_all(&line).await {
            return Err(refusal_or(&mut reader, ServeError::Dropped(error.to_string())).await);
        }
    }
    tracing::info!("registered with the daemon at {address}");

    let (writer, writer_task) = Writer::spawn(write_half, None);
    let beats = heartbeat::spawn(writer.clone(), settings.heartbeat_interval);
    let config = RouterConfig {
        invoke_timeout: settings.invoke_timeout,
        non_json_is_fatal: true,
    };
    let routed = route(reader, writer, handler, config);
    tokio::pin!(routed);
    let result = tokio::select! {
        routed = &mut routed => routed_outcome(routed),
        written = writer_task => {
            // A refusal usually arrives as a write fails: give the reader a moment to see it.
            match tokio::time::timeout(Duration::from_secs(2), &mut routed).await {
                Ok(routed @ Ok(RouterEnd::DaemonSaid(_))) => routed_outcome(routed),
                _ => Err(ServeError::Dropped(match written {
                    Ok(Ok(())) => "the connection closed".to_string(),
                    Ok(Err(error)) => error.to_string(),
                    Err(join) => join.to_string(),
                })),
            }
        }
    };
    beats.abort();
    result
}

fn routed_outcome(routed: std::io::Result<RouterEnd>) -> Result<(), ServeError> {
    match routed {
        Ok(RouterEnd::DaemonSaid(text)) => Err(ServeError::Refused(text)),
        Ok(RouterEnd::EndOfStream) => Err(ServeError::Dropped(
            "the daemon closed the connection".into(),
        )),
        Err(error) => Err(ServeError::Dropped(error.to_string())),
    }
}

/// After a failed write, the daemon may have said why before closing: prefer its words.
async fn refusal_or(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    other: ServeError,
) -> ServeError {
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(2), reader.read_to_string(&mut text)).await;
    match read {
        Ok(_) if !text.trim().is_empty() => ServeError::Refused(text.trim().to_string()),
        _ => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_the_sdk() {
        assert_eq!(
            parse_address("localhost:5003").unwrap(),
            ("localhost".into(), 5003)
        );
        assert_eq!(
            parse_address("debug.example.com").unwrap(),
            ("debug.example.com".into(), 5003)
        );
        assert_eq!(
            parse_address("tcp://10.0.0.5:6000/").unwrap(),
            ("10.0.0.5".into(), 6000)
        );
        assert_eq!(parse_address("[::1]:5003").unwrap(), ("::1".into(), 5003));
        assert!(parse_address("host:notaport").is_err());
        assert!(parse_address(":5003").is_err());
    }

    #[test]
    fn target_reads_host_port_and_key() {
        let vars = |name: &str| match name {
            "REMOTE_INSTALL_HOST" => Some("daemon".to_string()),
            "REMOTE_INSTALL_PORT" => Some("5100".to_string()),
            "REMOTE_INSTALL_KEY" => Some(" k-1 ".to_string()),
            _ => None,
        };
        let target = RemoteTarget::from_vars(vars).unwrap();
        assert_eq!(
            (target.host.as_str(), target.port, target.key.as_str()),
            ("daemon", 5100, "k-1")
        );
        assert!(!format!("{target:?}").contains("k-1"));
        assert!(RemoteTarget::from_vars(|_| None).is_err());
    }

    #[test]
    fn dotenv_lines_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# debug\nINSTALL_METHOD=remote\nexport REMOTE_INSTALL_URL=\"localhost:5003\"\nREMOTE_INSTALL_KEY='abc' \nX=1 # note\n\n",
        )
        .unwrap();
        let vars = read_dotenv(&path);
        assert_eq!(
            vars,
            vec![
                ("INSTALL_METHOD".to_string(), "remote".to_string()),
                (
                    "REMOTE_INSTALL_URL".to_string(),
                    "localhost:5003".to_string()
                ),
                ("REMOTE_INSTALL_KEY".to_string(), "abc".to_string()),
                ("X".to_string(), "1".to_string()),
            ]
        );
    }
}
