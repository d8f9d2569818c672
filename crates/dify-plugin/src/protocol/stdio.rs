//! The local runtime's transport: the daemon writes requests to our stdin and reads our
//! stdout, one JSON object per line (`docs/protocol.md` §2.1, §3.1).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;

use super::router::{route, RequestHandler, RouterConfig};
use super::writer::Writer;
use super::{heartbeat, ServeError, ServeSettings};

/// The daemon's default maximum stdout line, newline included.
pub const DEFAULT_LINE_CAP: usize = 5_242_880;

/// The daemon's stdout line cap, resolved the way the daemon resolves it
/// (`Config.GetLocalRuntimeMaxBufferSize`): the legacy `PLUGIN_STDIO_MAX_BUFFER_SIZE` wins when
/// set to something other than its default or zero, else `PLUGIN_RUNTIME_MAX_BUFFER_SIZE`.
pub fn line_cap_from(var: impl Fn(&str) -> Option<String>) -> usize {
    let read = |name: &str| {
        var(name)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&v| v > 0)
    };
    match read("PLUGIN_STDIO_MAX_BUFFER_SIZE") {
        Some(legacy) if legacy != DEFAULT_LINE_CAP => legacy,
        _ => read("PLUGIN_RUNTIME_MAX_BUFFER_SIZE").unwrap_or(DEFAULT_LINE_CAP),
    }
}

pub async fn serve(
    handler: Arc<dyn RequestHandler>,
    settings: &ServeSettings,
) -> Result<(), ServeError> {
    let line_cap = line_cap_from(|name| std::env::var(name).ok());
    let (writer, writer_task) = Writer::spawn(tokio::io::stdout(), Some(line_cap));
    let beats = heartbeat::spawn(writer.clone(), settings.heartbeat_interval);
    let config = RouterConfig {
        invoke_timeout: settings.invoke_timeout,
        non_json_is_fatal: false,
    };
    let reader = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    tracing::info!(line_cap, "serving on stdio");
    let result = tokio::select! {
        routed = route(reader, writer, handler, config) => {
            routed.map(drop).map_err(ServeError::Input)
        }
        written = writer_task => match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(ServeError::Output(error)),
            Err(join) => Err(ServeError::Output(std::io::Error::other(join))),
        },
        () = parent_gone() => {
            tracing::info!("the daemon went away; exiting");
            Ok(())
        }
    };
    beats.abort();
    result
}

/// Resolves when the parent process changes (the daemon died and we were re-parented), as the
/// SDK's `_parent_alive_check` does.
async fn parent_gone() {
    let parent = std::os::unix::process::parent_id();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(vars: &[(&str, &str)]) -> usize {
        line_cap_from(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn the_line_cap_resolves_like_the_daemon() {
        assert_eq!(cap(&[]), 5_242_880);
        assert_eq!(
            cap(&[("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "10485760")]),
            10_485_760
        );
        // The legacy name wins only when it differs from its default.
        assert_eq!(
            cap(&[
                ("PLUGIN_STDIO_MAX_BUFFER_SIZE", "5242880"),
                ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "8000000")
            ]),
            8_000_000
        );
        assert_eq!(
            cap(&[
                ("PLUGIN_STDIO_MAX_BUFFER_SIZE", "2000000"),
                ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "8000000")
            ]),
            2_000_000
        );
        assert_eq!(cap(&[("PLUGIN_STDIO_MAX_BUFFER_SIZE", "0")]), 5_242_880);
        assert_eq!(
            cap(&[("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "lots")]),
            5_242_880
        );
    }
}
