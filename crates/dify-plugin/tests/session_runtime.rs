//! The protocol runtime in-process with a test handler, driven by the fake daemon over
//! socket pairs: plugin storage round-trips, busy handlers and heartbeats, crashes and
//! oversize lines.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use dify_plugin::protocol::router::{route, RouterConfig};
use dify_plugin::protocol::storage::StorageError;
use dify_plugin::protocol::writer::Writer;
use dify_plugin::protocol::{
    heartbeat, ErrorPayload, HandlerFuture, Request, RequestHandler, Session,
};
use serde_json::{json, Value};
use test_support::fake_daemon::{FakeDaemon, StorageMode};

struct TestHandler;

fn failed(e: impl std::fmt::Display) -> ErrorPayload {
    ErrorPayload::new("TestFailure", e.to_string())
}

impl RequestHandler for TestHandler {
    fn handle(&self, request: Request, session: Session) -> HandlerFuture {
        Box::pin(async move {
            let storage = session.storage();
            match request.action.as_str() {
                "storage_round_trips" => {
                    // Many calls in flight at once on one stream.
                    let calls = (0..50).map(|i| {
                        let storage = storage.clone();
                        async move {
                            let key = format!("probe/{i}");
                            let value = format!("value {i} {}", "x".repeat(i * 100)).into_bytes();
                            storage.set(&key, &value).await?;
                            let exists = storage.exist(&key).await?;
                            let read = storage.get(&key).await?;
                            if i % 2 == 0 {
                                storage.del(&key).await?;
                            }
                            let after = storage.exist(&key).await?;
                            Ok::<_, StorageError>(json!({
                                "exists": exists, "same": read.as_deref() == Some(&value[..]), "after": after,
                            }))
                        }
                    });
                    let results: Vec<Value> = futures_join(calls).await.map_err(failed)?;
                    session
                        .stream(json!({"results": results}))
                        .await
                        .map_err(failed)?;
                    Ok(())
                }
                "storage_missing" => {
                    let value = storage.get("never/set").await.map_err(failed)?;
                    session
                        .stream(json!({"missing": value.is_none()}))
                        .await
                        .map_err(failed)?;
                    Ok(())
                }
                "storage_errors" => {
                    let bad_key = storage.get("a/../b").await.unwrap_err();
                    let long_key = storage.set(&"k".repeat(300), b"v").await.unwrap_err();
                    let daemon = storage.set("ok/key", b"v").await;
                    session
                        .stream(json!({
                            "bad_key": bad_key.to_string(),
                            "long_key": long_key.to_string(),
                            "daemon": daemon.err().map(|e| e.to_string()),
                        }))
                        .await
                        .map_err(failed)?;
                    Ok(())
                }
                "storage_silence" => match storage.exist("any").await {
                    Err(StorageError::Unavailable(message)) => {
                        Err(ErrorPayload::new("StorageUnavailable", message))
                    }
                    other => Err(failed(format!("unexpected {other:?}"))),
                },
                "busy" => {
                    tokio::time::sleep(Duration::from_millis(1500)).await;
                    Ok(())
                }
                "crash" => panic!("handler bug"),
                "oversize" => {
                    let first = session.stream(json!({"blob": "y".repeat(5000)})).await;
                    let second = session.stream(json!({"small": true})).await;
                    assert!(first.is_err() && second.is_err());
                    Ok(())
                }
                other => Err(failed(format!("no test action {other}"))),
            }
        })
    }
}

async fn futures_join<T, E>(
    calls: impl Iterator<Item = impl std::future::Future<Output = Result<T, E>> + Send + 'static>,
) -> Result<Vec<T>, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    let handles: Vec<_> = calls.map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("task")?);
    }
    Ok(results)
}

/// Starts the runtime on one end of two socket pairs; the fake daemon holds the other ends.
fn start(
    line_cap: Option<usize>,
    invoke_timeout: Duration,
) -> (FakeDaemon, tokio::runtime::Runtime) {
    let (plugin_in, daemon_out) = UnixStream::pair().unwrap();
    let (daemon_in, plugin_out) = UnixStream::pair().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(async move {
        plugin_in.set_nonblocking(true).unwrap();
        plugin_out.set_nonblocking(true).unwrap();
        let reader =
            tokio::io::BufReader::new(tokio::net::UnixStream::from_std(plugin_in).unwrap());
        let out = tokio::net::UnixStream::from_std(plugin_out).unwrap();
        let (writer, _task) = Writer::spawn(out, line_cap);
        let _beats = heartbeat::spawn(writer.clone(), Duration::from_millis(200));
        let config = RouterConfig {
            invoke_timeout,
            non_json_is_fatal: false,
        };
        let _ = route(reader, writer, Arc::new(TestHandler), config).await;
    });
    (FakeDaemon::over(daemon_in, daemon_out), runtime)
}

fn only_stream(messages: &[Value]) -> Value {
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[1], json!({"type": "end", "data": {}}));
    messages[0]["data"].clone()
}

#[test]
fn fifty_concurrent_storage_calls_round_trip() {
    let (daemon, _rt) = start(Some(5_242_880), Duration::from_secs(10));
    let session = daemon.request("storage_round_trips", json!({}));
    let data = only_stream(&daemon.finish(&session));
    let results = data["results"].as_array().unwrap();
    assert_eq!(results.len(), 50);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result,
            &json!({"exists": true, "same": true, "after": i % 2 == 1}),
            "call {i}"
        );
    }
    let recorded = daemon.recorded();
    assert_eq!(recorded.storage.len(), 25);
    assert_eq!(
        recorded.storage["probe/1"],
        format!("value 1 {}", "x".repeat(100)).into_bytes()
    );
    // Every invoke went out with this session's id and the daemon's exact shape.
    let invokes: Vec<&Value> = recorded
        .lines
        .iter()
        .map(|(_, l)| l)
        .filter(|l| l["data"]["type"] == "invoke")
        .collect();
    assert_eq!(invokes.len(), 50 * 4 + 25);
    for invoke in invokes {
        assert_eq!(invoke["session_id"], session.as_str());
        let data = &invoke["data"]["data"];
        assert_eq!(data["type"], "storage");
        assert!(data["backwards_request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()));
        let opt = data["request"]["opt"].as_str().unwrap();
        assert!(["get", "set", "exist", "del"].contains(&opt));
        assert_eq!(data["request"].get("value").is_some(), opt == "set");
    }
}

#[test]
fn a_missing_key_reads_as_none_after_checking_it_exists() {
    let (daemon, _rt) = start(None, Duration::from_secs(10));
    let session = daemon.request("storage_missing", json!({}));
    assert_eq!(
        only_stream(&daemon.finish(&session)),
        json!({"missing": true})
    );
    assert_eq!(
        daemon.recorded().storage_calls,
        vec!["get never/set", "exist never/set"]
    );
}

#[test]
fn bad_keys_are_refused_before_sending_and_daemon_errors_are_typed() {
    let (daemon, _rt) = start(None, Duration::from_secs(10));
    daemon.set_storage_mode(StorageMode::Failing);
    let session = daemon.request("storage_errors", json!({}));
    let data = only_stream(&daemon.finish(&session));
    assert!(
        data["bad_key"].as_str().unwrap().contains("path traversal"),
        "{data}"
    );
    assert!(data["long_key"].as_str().unwrap().contains("256"), "{data}");
    assert!(
        data["daemon"]
            .as_str()
            .unwrap()
            .contains("storage backend unavailable"),
        "{data}"
    );
    assert_eq!(
        daemon.recorded().storage_calls,
        vec!["set ok/key"],
        "invalid keys never reach the daemon"
    );
}

#[test]
fn a_silent_storage_times_out_with_a_typed_error() {
    let (daemon, _rt) = start(None, Duration::from_millis(300));
    daemon.set_storage_mode(StorageMode::Silent);
    let session = daemon.request("storage_silence", json!({}));
    let messages = daemon.finish(&session);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["data"]["error_type"], "StorageUnavailable");
}

#[test]
fn heartbeats_keep_coming_while_a_handler_is_busy() {
    let (daemon, _rt) = start(None, Duration::from_secs(10));
    let session = daemon.request("busy", json!({}));
    let requested = std::time::Instant::now();
    daemon.finish(&session);
    let recorded = daemon.recorded();
    let ended = recorded
        .lines
        .iter()
        .find(|(_, l)| l["session_id"] == session.as_str())
        .unwrap()
        .0;
    let during: Vec<_> = recorded
        .heartbeats()
        .into_iter()
        .filter(|t| *t > requested && *t < ended)
        .collect();
    assert!(
        during.len() >= 5,
        "only {} heartbeats during a 1.5 s handler",
        during.len()
    );
    let widest = during.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        widest < Duration::from_millis(600),
        "a gap of {widest:?} between heartbeats"
    );
}

#[test]
fn a_crashing_handler_still_ends_its_session_and_the_runtime_keeps_serving() {
    let (daemon, _rt) = start(None, Duration::from_secs(10));
    let crashed = daemon.request("crash", json!({}));
    let messages = daemon.finish(&crashed);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0]["data"]["error_type"],
        "InvokeServerUnavailableError"
    );
    assert_eq!(messages[0]["data"]["args"]["error"], "InternalError");
    assert!(!messages[0]["data"]["message"]
        .as_str()
        .unwrap()
        .contains("handler bug"));
    let next = daemon.request("storage_missing", json!({}));
    assert_eq!(only_stream(&daemon.finish(&next)), json!({"missing": true}));
}

#[test]
fn an_oversize_line_becomes_the_sessions_only_error() {
    let (daemon, _rt) = start(Some(4096), Duration::from_secs(10));
    let session = daemon.request("oversize", json!({}));
    let messages = daemon.finish(&session);
    std::thread::sleep(Duration::from_millis(200));
    let messages_later = daemon.recorded().session(&session);
    assert_eq!(messages, messages_later, "nothing after the error");
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["type"], "error");
    assert_eq!(messages[0]["data"]["error_type"], "InvokeBadRequestError");
    assert_eq!(
        messages[0]["data"]["args"]["error"],
        "ResponseTooLargeError"
    );
}
