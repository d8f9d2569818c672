//! Remote debugging: the binary dials a fake daemon's debug port, registers frame by frame,
//! and then serves requests over the same socket.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::daemon_rules::registration_problems;
use crate::support::fake_daemon::{copy_plugin, FakeDaemon, BINARY, REPO_DIR};
use serde_json::{json, Value};

const KEY: &str = "6f1c2a8e-3b7d-4c55-9e0a-2d9b1f4e7a10";

fn spawn_remote(port: u16, dir: &Path, with_env: bool) -> Child {
    let mut command = Command::new(BINARY);
    command
        .current_dir(dir)
        .env_remove("REMOTE_INSTALL_URL")
        .env_remove("REMOTE_INSTALL_HOST")
        .env_remove("REMOTE_INSTALL_PORT")
        .env_remove("REMOTE_INSTALL_KEY")
        .env_remove("INSTALL_METHOD")
        .env("HEARTBEAT_INTERVAL", "0.3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if with_env {
        command
            .env("INSTALL_METHOD", "remote")
            .env("REMOTE_INSTALL_URL", format!("127.0.0.1:{port}"))
            .env("REMOTE_INSTALL_KEY", KEY);
    }
    command.spawn().unwrap()
}

/// Accepts one connection and reads frames until `end`; every line before it must be a
/// `{type, data}` frame, as the daemon's `onMessage` demands.
fn accept_registration(listener: &TcpListener) -> (Vec<Value>, TcpStream) {
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut frames = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed during registration"
        );
        if line.trim().is_empty() {
            continue;
        }
        let frame: Value = serde_json::from_str(&line).expect("every registration line is JSON");
        assert!(
            frame["type"].is_string() && frame.get("data").is_some(),
            "not a registration frame: {line}"
        );
        let done = frame["type"] == "end";
        frames.push(frame);
        if done {
            break;
        }
    }
    assert!(reader.buffer().is_empty() || !reader.buffer().starts_with(b"{\"event\":\"log\""));
    stream.set_read_timeout(None).unwrap();
    (frames, stream)
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the plugin did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn registers_frame_by_frame_then_serves_requests_and_heartbeats() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn_remote(port, Path::new(REPO_DIR), true);
    let (frames, stream) = accept_registration(&listener);

    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..3],
        [
            "handshake",
            "manifest_declaration",
            "datasource_declaration"
        ]
    );
    assert!(types[3..types.len() - 1]
        .iter()
        .all(|t| *t == "asset_chunk"));
    assert_eq!(
        frames[0],
        json!({"type": "handshake", "data": {"key": KEY}})
    );
    assert_eq!(frames.last().unwrap(), &json!({"type": "end", "data": {}}));
    let problems = registration_problems(&frames, KEY, &Path::new(REPO_DIR).join("_assets"));
    assert!(problems.is_empty(), "{problems:?}");
    let provider = &frames[2]["data"][0];
    assert_eq!(provider["identity"]["name"], "git_datasource");
    assert_eq!(
        provider["datasources"][0]["identity"]["name"],
        "git_datasource"
    );
    let manifest = &frames[1]["data"];
    assert_eq!(
        (manifest["author"].as_str(), manifest["name"].as_str()),
        (Some("dify-community"), Some("git_datasource"))
    );

    let daemon = FakeDaemon::over(stream.try_clone().unwrap(), stream);
    daemon.wait_for(Duration::from_secs(5), "heartbeats after end", |r| {
        (r.heartbeats().len() >= 3).then_some(())
    });
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"credentials": {"access_token": "abc"}}),
    );
    let messages = daemon.finish(&session);
    assert_eq!(
        messages,
        vec![
            json!({"type": "stream", "data": {"result": true}}),
            json!({"type": "end", "data": {}})
        ]
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_refused_handshake_is_shown_and_the_process_exits_non_zero() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn_remote(port, Path::new(REPO_DIR), true);
    let (_frames, mut stream) = accept_registration(&listener);
    stream
        .write_all(b"handshake failed, invalid key\n")
        .unwrap();
    drop(stream);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("handshake failed, invalid key"), "{stderr}");
    assert!(!stderr.contains(KEY), "the debug key is never logged");
}

#[test]
fn a_dropped_connection_is_retried_and_the_registration_replayed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = spawn_remote(port, Path::new(REPO_DIR), true);
    let (first, stream) = accept_registration(&listener);
    drop(stream);
    let (second, stream) = accept_registration(&listener);
    assert_eq!(first, second, "the same registration is replayed");
    let daemon = FakeDaemon::over(stream.try_clone().unwrap(), stream);
    let session = daemon.request("validate_datasource_credentials", json!({}));
    assert_eq!(daemon.finish(&session).last().unwrap()["type"], "end");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn settings_come_from_a_dotenv_file_like_the_sdk() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(dir.path());
    std::fs::write(
        dir.path().join(".env"),
        format!("INSTALL_METHOD=remote\nREMOTE_INSTALL_HOST=127.0.0.1\nREMOTE_INSTALL_PORT={port}\nREMOTE_INSTALL_KEY={KEY}\n"),
    )
    .unwrap();
    let mut child = spawn_remote(port, dir.path(), false);
    let (frames, _stream) = accept_registration(&listener);
    assert_eq!(frames[0]["data"]["key"], KEY);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn no_daemon_to_reach_is_an_error_after_a_few_tries() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut child = spawn_remote(port, Path::new(REPO_DIR), true);
    let status = wait_exit(&mut child, Duration::from_secs(40));
    assert!(!status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the daemon"), "{stderr}");
}
