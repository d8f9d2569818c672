//! The binary over stdio, driven by the fake daemon exactly as the local runtime drives it.

use std::time::{Duration, Instant};

use crate::support::fake_daemon::{copy_plugin, FakeDaemon, BINARY, REPO_DIR};
use crate::support::keys;
use serde_json::{json, Value};

fn terminal(messages: &[Value]) -> Vec<&Value> {
    messages
        .iter()
        .filter(|m| m["type"] == "end" || m["type"] == "error")
        .collect()
}

/// The session's one error payload, after checking the daemon's `ErrorResponse` rules.
fn single_error(messages: &[Value]) -> Value {
    let ends = terminal(messages);
    assert_eq!(ends.len(), 1, "exactly one end or error: {messages:?}");
    assert_eq!(ends[0]["type"], "error", "{messages:?}");
    let error = ends[0]["data"].clone();
    assert!(error["error_type"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(error["message"].as_str().is_some_and(|s| !s.is_empty()));
    let args = error["args"].as_object().expect("args is an object");
    assert!(args.len() <= 10);
    error
}

#[test]
fn heartbeat_comes_first_and_keeps_coming() {
    let daemon = FakeDaemon::spawn(&[("HEARTBEAT_INTERVAL", "0.2")]);
    let first = daemon.wait_for(Duration::from_secs(10), "the first line", |r| {
        r.lines.first().map(|(_, l)| l.clone())
    });
    assert_eq!(
        first,
        json!({"event": "heartbeat", "session_id": null, "data": {}})
    );
    daemon.wait_for(Duration::from_secs(5), "five heartbeats", |r| {
        (r.heartbeats().len() >= 5).then_some(())
    });
    assert!(
        daemon.recorded().junk.is_empty(),
        "nothing but JSON lines on stdout"
    );
}

#[test]
fn valid_credentials_answer_result_true_then_end() {
    let daemon = FakeDaemon::spawn(&[]);
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"provider": "git_datasource", "credentials": {"access_token": "", "username": ""}}),
    );
    let messages = daemon.finish(&session);
    assert_eq!(
        messages,
        vec![
            json!({"type": "stream", "data": {"result": true}}),
            json!({"type": "end", "data": {}})
        ]
    );
    let raw = daemon
        .recorded()
        .lines
        .iter()
        .find(|(_, l)| l["session_id"] == session)
        .unwrap()
        .1
        .clone();
    assert_eq!(raw["event"], "session");
}

#[test]
fn real_keys_certificates_and_known_hosts_validate_in_every_pasted_form() {
    let dir = tempfile::tempdir().unwrap();
    let (ed25519, ed25519_pub) = keys::ssh_keygen(dir.path(), "ed", &["-t", "ed25519"], "");
    let (rsa_pem, _) = keys::ssh_keygen(
        dir.path(),
        "rsa",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "",
    );
    let (ecdsa, _) = keys::ssh_keygen(dir.path(), "ec", &["-t", "ecdsa"], "");
    let (locked, _) = keys::ssh_keygen(dir.path(), "locked", &["-t", "ed25519"], "open sesame");
    let (locked_pem, _) = keys::ssh_keygen(
        dir.path(),
        "locked_pem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM"],
        "pem pass",
    );
    let ca = keys::ca_certificate(dir.path());
    let known_hosts = format!(
        "# team servers\ngit.example.com {}\n[git.example.com]:2222 {}",
        ed25519_pub.trim(),
        ed25519_pub.trim()
    );

    let daemon = FakeDaemon::spawn(&[]);
    let forms = |key: &str| {
        vec![
            key.to_string(),
            key.replace('\n', "\r\n"),
            key.replace('\n', "\\n"),
            key.trim().replace('\n', " "),
        ]
    };
    let mut cases = Vec::new();
    for key in [&ed25519, &rsa_pem, &ecdsa] {
        for form in forms(key) {
            cases.push(json!({"ssh_private_key": form, "ssh_known_hosts": known_hosts, "ca_certificate": ca}));
        }
    }
    for form in forms(&locked) {
        cases.push(json!({"ssh_private_key": form, "ssh_passphrase": "open sesame"}));
    }
    cases.push(json!({"ssh_private_key": locked_pem, "ssh_passphrase": "pem pass"}));
    for credentials in cases {
        let session = daemon.request(
            "validate_datasource_credentials",
            json!({"credentials": credentials}),
        );
        let messages = daemon.finish(&session);
        assert_eq!(
            messages[0],
            json!({"type": "stream", "data": {"result": true}}),
            "{credentials}"
        );
    }

    // Wrong or missing passphrases, a public key, junk: each named by field, no secret echoed.
    let bad = [
        (
            json!({"ssh_private_key": locked, "ssh_passphrase": "wrong guess"}),
            "ssh_private_key",
            "passphrase",
        ),
        (
            json!({"ssh_private_key": locked}),
            "ssh_private_key",
            "ssh_passphrase",
        ),
        (
            json!({"ssh_private_key": locked_pem, "ssh_passphrase": "nope nope"}),
            "ssh_private_key",
            "passphrase",
        ),
        (
            json!({"ssh_private_key": ed25519_pub}),
            "ssh_private_key",
            "public key",
        ),
        (
            json!({"access_token": "ghp_abc def"}),
            "access_token",
            "spaces",
        ),
        (
            json!({"ca_certificate": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"}),
            "ca_certificate",
            "PEM",
        ),
        (
            json!({"ssh_known_hosts": "git.example.com ssh-ed25519 AAAAnotakey"}),
            "ssh_known_hosts",
            "line 1",
        ),
        (
            json!({"ssh_passphrase": "dangling secret"}),
            "ssh_passphrase",
            "ssh_private_key",
        ),
        (
            json!({"access_token": ["not", "text"]}),
            "access_token",
            "text",
        ),
    ];
    for (credentials, field, hint) in bad {
        let session = daemon.request(
            "validate_datasource_credentials",
            json!({"credentials": credentials}),
        );
        let error = single_error(&daemon.finish(&session));
        assert_eq!(error["error_type"], "CredentialsValidateFailedError");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(field) && message.contains(hint),
            "{message}"
        );
        assert!(error["args"].get(field).is_some(), "{error}");
        for secret in [
            "wrong guess",
            "dangling secret",
            "ghp_abc",
            "nope nope",
            "AAAAnotakey",
        ] {
            assert!(
                !error.to_string().contains(secret),
                "secret echoed: {error}"
            );
        }
    }
    for secret in [
        "open sesame",
        "pem pass",
        "wrong guess",
        "dangling secret",
        "ghp_abc",
    ] {
        assert!(!daemon.stderr_text().contains(secret), "secret in the log");
    }
}

#[test]
fn crawl_without_a_url_and_unknown_actions_get_a_clear_error() {
    let daemon = FakeDaemon::spawn(&[]);
    let crawl = daemon.request(
        "invoke_website_datasource_get_crawl",
        json!({"provider": "git_datasource", "datasource": "git_datasource", "credentials": {}, "datasource_parameters": {}}),
    );
    let error = single_error(&daemon.finish(&crawl));
    // Dify shows the message of the error types it knows; ours is named in `args.error`.
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["error"], "CrawlParameterError");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("repo_url is missing"));

    let unknown = daemon.request("invoke_online_document_datasource_get_pages", json!({}));
    let error = single_error(&daemon.finish(&unknown));
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("invoke_online_document_datasource_get_pages"));
}

#[test]
fn twenty_interleaved_sessions_each_get_their_own_end() {
    let daemon = FakeDaemon::spawn(&[]);
    let sessions: Vec<(String, bool)> = (0..20)
        .map(|i| {
            let valid = i % 3 != 0;
            let token = if valid { "tok" } else { "t o k" };
            let id = daemon.request(
                "validate_datasource_credentials",
                json!({"credentials": {"access_token": token}}),
            );
            (id, valid)
        })
        .collect();
    for (id, valid) in &sessions {
        let messages = daemon.finish(id);
        let ends = terminal(&messages);
        assert_eq!(ends.len(), 1, "{id}: {messages:?}");
        assert_eq!(
            ends[0]["type"],
            if *valid { "end" } else { "error" },
            "{id}"
        );
    }
    // Nothing arrives for a session after its end.
    std::thread::sleep(Duration::from_millis(200));
    for (id, _) in &sessions {
        let messages = daemon.recorded().session(id);
        let last = messages.last().unwrap();
        assert!(last["type"] == "end" || last["type"] == "error");
    }
}

#[test]
fn bad_input_never_takes_the_process_down() {
    let daemon = FakeDaemon::spawn(&[]);
    daemon.send_raw(b"this is not json\n");
    daemon.send_raw(b"{\"session_id\":\"s-trunc\",\"event\":\"request\",\"data\":{\"type\":\n");
    daemon.send_raw(b"\xff\xfe\x00 not utf-8 \xc3\x28\n");
    daemon.send_raw(b"[1,2,3]\n\n\r\n");
    daemon.send_raw(b"{\"event\":\"request\",\"data\":{\"type\":\"datasource\"}}\n");
    daemon.send_raw(
        b"{\"session_id\":\"s-data\",\"event\":\"request\",\"data\":\"not an object\"}\n",
    );
    daemon.send_raw(b"{\"session_id\":\"s-type\",\"event\":\"request\",\"data\":{\"type\":7,\"action\":\"validate_datasource_credentials\"}}\n");
    daemon.send_raw(b"{\"session_id\":\"s-noaction\",\"event\":\"request\",\"data\":{\"type\":\"datasource\"}}\n");
    daemon.send_raw(b"{\"session_id\":\"s-event\",\"event\":\"mystery\",\"data\":{}}\n");
    daemon.send_raw(b"{\"session_id\":42,\"event\":\"request\",\"data\":{}}\n");
    daemon.send_raw(b"{\"session_id\":\"s-creds\",\"event\":\"request\",\"data\":{\"type\":\"datasource\",\"action\":\"validate_datasource_credentials\",\"credentials\":\"oops\"}}\n");
    daemon.send_raw(b"{\"session_id\":\"s-bw\",\"event\":\"backwards_response\",\"data\":{\"backwards_request_id\":\"nobody\",\"event\":\"end\",\"message\":\"\",\"data\":null}}\n");
    // A line longer than the reader keeps (64 MiB), then a normal request.
    let mut huge = vec![b'x'; 65 * 1024 * 1024];
    huge.push(b'\n');
    daemon.send_raw(&huge);
    drop(huge);
    for id in [
        "s-trunc",
        "s-data",
        "s-type",
        "s-noaction",
        "s-event",
        "s-creds",
    ] {
        let error = single_error(&daemon.finish(id));
        assert_eq!(
            error["error_type"],
            if id == "s-creds" {
                "CredentialsValidateFailedError"
            } else {
                "InvokeBadRequestError"
            }
        );
    }
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"credentials": {}}),
    );
    assert_eq!(daemon.finish(&session).last().unwrap()["type"], "end");
    let stderr = daemon.stderr_once(
        &["not valid JSON", "skipped an incoming line of"],
        Duration::from_secs(10),
    );
    assert!(stderr.contains("not valid JSON"), "{stderr}");
    assert!(stderr.contains("skipped an incoming line of"), "{stderr}");
    assert!(daemon.recorded().junk.is_empty());
}

#[test]
fn a_line_that_would_reach_the_cap_fails_its_session_instead() {
    // The legacy variable wins when it is not its default, as in the daemon.
    let daemon = FakeDaemon::spawn(&[
        ("PLUGIN_STDIO_MAX_BUFFER_SIZE", "700"),
        ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "5242880"),
    ]);
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"credentials": {"access_token": "a b", "username": "c d", "ca_certificate": "x", "ssh_known_hosts": "y", "ssh_private_key": "z"}}),
    );
    let error = single_error(&daemon.finish(&session));
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["error"], "ResponseTooLargeError");
    assert!(error["message"].as_str().unwrap().contains("700"));
    let recorded = daemon.recorded();
    assert!(recorded
        .lines
        .iter()
        .all(|(_, l)| l.to_string().len() < 700));
}

/// Whatever the daemon sends, no line the plugin writes reaches the cap (a session id of
/// megabytes included), and absurd timing settings are clamped instead of panicking.
#[test]
fn hostile_session_ids_and_settings_are_bounded() {
    let daemon = FakeDaemon::spawn(&[
        ("PLUGIN_RUNTIME_MAX_BUFFER_SIZE", "4096"),
        ("HEARTBEAT_INTERVAL", "1e30"),
        ("MAX_INVOCATION_TIMEOUT", "1e300"),
    ]);
    let huge_id = "s".repeat(6000);
    daemon.send_raw(
        format!("{{\"session_id\":\"{huge_id}\",\"event\":\"request\",\"data\":{{\"type\":\"datasource\",\"action\":\"nope\"}}}}\n")
            .as_bytes(),
    );
    daemon.send_raw(
        format!("{{\"session_id\":\"{huge_id}\",\"event\":\"request\",\"data\":7\n").as_bytes(),
    );
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"credentials": {}}),
    );
    assert_eq!(
        daemon.finish(&session).last().unwrap()["type"],
        "end",
        "{}",
        daemon.stderr_text()
    );
    let recorded = daemon.recorded();
    assert!(recorded
        .lines
        .iter()
        .all(|(_, l)| l.to_string().len() < 4096));
    let log = daemon.stderr_once(&["out of range"], Duration::from_secs(10));
    assert!(log.contains("out of range"), "{log}");
}

#[test]
fn end_of_input_ends_the_process_promptly() {
    let mut daemon = FakeDaemon::spawn(&[]);
    daemon.wait_for(Duration::from_secs(10), "the first heartbeat", |r| {
        (!r.heartbeats().is_empty()).then_some(())
    });
    let started = Instant::now();
    let status = daemon
        .close_and_wait(Duration::from_secs(5))
        .expect("exits after EOF");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn losing_the_parent_ends_the_process() {
    // sh starts the plugin in the background and prints its pid; killing sh orphans it.
    let mut command = std::process::Command::new("sh");
    command
        .args(["-c", "\"$0\" & echo \"{\\\"pid\\\": $!}\"; wait", BINARY])
        .current_dir(REPO_DIR)
        .env("INSTALL_METHOD", "local");
    let mut daemon = FakeDaemon::spawn_command(command, &[]);
    let pid = daemon.wait_for(Duration::from_secs(10), "the plugin pid", |r| {
        r.lines.iter().find_map(|(_, l)| l["pid"].as_u64())
    });
    daemon.wait_for(Duration::from_secs(10), "a heartbeat", |r| {
        (!r.heartbeats().is_empty()).then_some(())
    });
    daemon.child.as_mut().unwrap().kill().unwrap();
    daemon.child.as_mut().unwrap().wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let gone = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    };
    while !gone() {
        assert!(
            Instant::now() < deadline,
            "the orphaned plugin {pid} is still running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_broken_declaration_is_refused_at_start_with_the_check_message() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin(dir.path());
    let manifest = dir.path().join("manifest.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("language: python", "language: rust");
    std::fs::write(&manifest, text).unwrap();
    let serve = std::process::Command::new(BINARY)
        .current_dir(dir.path())
        .env("INSTALL_METHOD", "local")
        .output()
        .unwrap();
    let check = std::process::Command::new(BINARY)
        .args(["check", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!serve.status.success() && !check.status.success());
    let serve_err = String::from_utf8_lossy(&serve.stderr);
    let check_err = String::from_utf8_lossy(&check.stderr);
    assert!(
        check_err.contains("manifest.yaml: meta.runner.language: must be `python`"),
        "{check_err}"
    );
    assert!(
        serve_err.contains("manifest.yaml: meta.runner.language: must be `python`"),
        "{serve_err}"
    );
    assert!(
        serve.stdout.is_empty(),
        "nothing on stdout when refusing to start"
    );
}

/// An encrypted OpenSSH key names its own bcrypt rounds; one asking for billions is refused
/// at once by *Validate*, before anything tries to decrypt it.
#[test]
fn a_key_asking_for_billions_of_kdf_rounds_is_refused_at_once() {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let (key, _) =
        crate::support::keys::ssh_keygen(dir.path(), "k", &["-t", "ed25519", "-a", "16"], "pw");
    let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(body).unwrap();
    // kdfoptions = string salt + uint32 rounds, right after "bcrypt".
    let at = bytes.windows(6).position(|w| w == b"bcrypt").unwrap() + 6 + 4;
    let salt_len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let rounds_at = at + 4 + salt_len;
    assert_eq!(&bytes[rounds_at..rounds_at + 4], &16u32.to_be_bytes());
    bytes[rounds_at..rounds_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let hostile = format!(
        "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
        engine.encode(&bytes)
    );
    let daemon = FakeDaemon::spawn(&[]);
    let started = std::time::Instant::now();
    let session = daemon.request(
        "validate_datasource_credentials",
        json!({"credentials": {"ssh_private_key": hostile, "ssh_passphrase": "pw"}}),
    );
    let messages = daemon.finish(&session);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(messages[0]["type"], "error", "{messages:?}");
    assert!(
        messages[0].to_string().contains("key-derivation rounds"),
        "{messages:?}"
    );
}
