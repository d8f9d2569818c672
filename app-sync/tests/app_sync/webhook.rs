//! Import on push through the runtime's endpoint path: the fake daemon forwards a webhook as
//! the daemon does (`invoke_endpoint`, the raw HTTP request as Go writes it, in hex, with the
//! endpoint's settings), signed as GitHub, GitLab, Gitea, Forgejo and Bitbucket sign theirs
//! (payloads in the shape their documentation gives). An accepted push is answered 202 at once
//! and imported after the answer, with the bases of the tools' runs; forged, unsigned,
//! replayed and oversized requests are refused and change nothing; pings, other branches and
//! pushes without app files do nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::app_scenario::AppScenario;
use app_git_sync::webhook::signature::sign;

const SECRET: &str = "webhook-secret-0123456789";

/// A request as the daemon forwards it: Go's `Request.Write` of the host's POST.
fn forwarded(headers: &[(&str, String)], body: &[u8]) -> String {
    let mut raw = format!(
        "POST /push HTTP/1.1\r\nHost: dify.example.com\r\nUser-Agent: hook/1\r\nContent-Length: {}\r\nContent-Type: application/json\r\nDify-Hook-Id: 5c1e\r\n",
        body.len()
    );
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    hex::encode(bytes)
}

/// GitHub's, Gitea's and Forgejo's push payload (GitLab's has the same fields).
fn listed_push(branch: &str, after: &str, modified: &[&str]) -> Vec<u8> {
    json!({
        "ref": format!("refs/heads/{branch}"), "before": "0".repeat(40), "after": after,
        "repository": {"full_name": "team/apps", "default_branch": "main"},
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "commits": [{"id": after, "message": "edit", "added": [], "removed": [], "modified": modified}],
        "head_commit": {"id": after},
    })
    .to_string()
    .into_bytes()
}

/// Bitbucket Cloud's `repo:push`.
fn bitbucket_push(branch: &str, after: &str) -> Vec<u8> {
    json!({"push": {"changes": [{"new": {"type": "branch", "name": branch, "target": {"hash": after}},
                                  "old": {"type": "branch", "name": branch, "target": {"hash": "0a1b"}},
                                  "created": false, "closed": false}]},
           "repository": {"full_name": "team/apps"}, "actor": {"display_name": "dev"}})
    .to_string()
    .into_bytes()
}

/// The host's headers for `body`, signed with `secret`.
fn signed(host: &str, delivery: &str, body: &[u8], secret: &str) -> Vec<(&'static str, String)> {
    let signature = sign(secret, body);
    match host {
        "github" => vec![
            ("X-GitHub-Event", "push".into()),
            ("X-GitHub-Delivery", delivery.into()),
            ("X-Hub-Signature-256", format!("sha256={signature}")),
        ],
        "gitlab" => vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Event-UUID", delivery.into()),
            ("X-Gitlab-Token", secret.into()),
        ],
        // Gitea also sends GitHub's headers; its own come first.
        "gitea" => vec![
            ("X-Gitea-Event", "push".into()),
            ("X-Gitea-Delivery", delivery.into()),
            ("X-Gitea-Signature", signature.clone()),
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", format!("sha256={signature}")),
        ],
        "forgejo" => vec![
            ("X-Forgejo-Event", "push".into()),
            ("X-Forgejo-Delivery", delivery.into()),
            ("X-Forgejo-Signature", signature),
        ],
        _ => vec![
            ("X-Event-Key", "repo:push".into()),
            ("X-Request-UUID", delivery.into()),
            ("X-Hub-Signature", format!("sha256={signature}")),
        ],
    }
}

struct Hooks {
    s: AppScenario,
}

impl Hooks {
    fn settings(&self) -> Value {
        let mut settings = self.s.credentials();
        settings["webhook_secret"] = json!(SECRET);
        settings["publish"] = json!(false);
        settings
    }

    /// Sends a forwarded request; the endpoint's answer: status and text.
    fn send(&self, raw_hex: String) -> (u64, String) {
        let session = self.s.daemon.request(
            "invoke_endpoint",
            json!({"type": "endpoint", "raw_http_request": raw_hex, "settings": self.settings()}),
        );
        let messages = self.s.daemon.finish(&session);
        let chunk = messages
            .iter()
            .find(|m| m["type"] == "stream")
            .map(|m| m["data"].clone())
            .unwrap_or_else(|| panic!("{messages:#?}"));
        let body = hex::decode(chunk["result"].as_str().unwrap()).unwrap();
        (
            chunk["status"].as_u64().unwrap(),
            String::from_utf8(body).unwrap(),
        )
    }

    fn push(&self, host: &str, delivery: &str, body: &[u8]) -> (u64, String) {
        self.send(forwarded(&signed(host, delivery, body, SECRET), body))
    }

    /// The End node's title of the Report Workflow in Dify.
    fn title(&self) -> String {
        let state = self.s.console.state();
        state.app("Report Workflow").graph["nodes"][1]["data"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn wait_for_title(&self, title: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.title() != title {
            assert!(
                Instant::now() < deadline,
                "not imported: the title is {:?}; plugin log:\n{}",
                self.title(),
                self.s.daemon.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn start() -> (Hooks, String, String) {
    let s = AppScenario::on("1.16.1");
    let (text, _) = s.run("export_apps", json!({}));
    assert!(text.contains("Exported"), "{text}");
    let id = s.console.state().app("Report Workflow").id.clone();
    let path = s.file_of(&id);
    (Hooks { s }, id, path)
}

#[test]
fn a_push_from_each_host_is_answered_at_once_and_imported_after() {
    let (hooks, id, path) = start();
    for (i, host) in ["github", "gitlab", "gitea", "forgejo", "bitbucket"]
        .iter()
        .enumerate()
    {
        let before = hooks.title();
        let title = format!("Reply {i}");
        let after =
            hooks
                .s
                .edit_in_git(&id, &format!("title: {before}"), &format!("title: {title}"));
        let body = match *host {
            "bitbucket" => bitbucket_push("main", &after),
            _ => listed_push("main", &after, &[&path]),
        };
        let (status, text) = hooks.push(host, &format!("{host}-delivery-1"), &body);
        assert_eq!(status, 202, "{host}: {text}");
        assert!(text.contains(&after[..12]), "{host}: {text}");
        hooks.wait_for_title(&title);
    }
    // The tools see what the webhook imported: everything in sync, nothing to export.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hooks.s.all_in_sync() {
        assert!(
            Instant::now() < deadline,
            "{}",
            hooks.s.daemon.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (text, report) = hooks.s.run("export_apps", json!({}));
    assert!(report["commit"].is_null(), "{text}");
}

#[test]
fn forged_replayed_and_oversized_webhooks_change_nothing() {
    let (hooks, id, path) = start();
    let after = hooks.s.edit_in_git(&id, "title: End", "title: Forged");
    let body = listed_push("main", &after, &[&path]);
    let marker = "body-marker-7f3a";
    let mut marked = body.clone();
    marked.extend_from_slice(format!(" {marker}").as_bytes());
    for (headers, says) in [
        (
            signed("github", "d-1", &body, "not-the-secret-at-all"),
            "does not match",
        ),
        (
            signed("github", "d-2", &marked, SECRET)[..2].to_vec(),
            "no X-Hub-Signature-256",
        ),
        (
            signed("gitlab", "d-3", &body, "not-the-secret-at-all"),
            "X-Gitlab-Token",
        ),
        (
            signed("gitea", "d-4", &marked, "not-the-secret-at-all"),
            "does not match",
        ),
        (
            signed("bitbucket", "d-5", &body, "not-the-secret-at-all"),
            "does not match",
        ),
    ] {
        let sent_body = match headers.len() {
            2 => &marked,
            _ => &body,
        };
        let (status, text) = hooks.send(forwarded(&headers, sent_body));
        assert_eq!(status, 401, "{text}");
        assert!(text.contains(says), "{text}");
    }
    // The body tampered with after signing.
    let headers = signed("github", "d-6", &body, SECRET);
    let (status, _) = hooks.send(forwarded(&headers, &marked));
    assert_eq!(status, 401);
    // Oversized.
    let huge = vec![b' '; 5 * 1024 * 1024 + 1];
    let (status, text) = hooks.push("github", "d-7", &huge);
    assert_eq!(status, 413, "{text}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.title(), "End", "a refused webhook changed Dify");
    let log = hooks.s.daemon.stderr_text();
    assert!(log.contains("refused a webhook"), "{log}");
    assert!(!log.contains(marker) && !log.contains(SECRET), "{log}");

    // Accepted once; the same delivery again is a replay.
    let (status, _) = hooks.push("github", "d-8", &body);
    assert_eq!(status, 202);
    hooks.wait_for_title("Forged");
    let (status, text) = hooks.push("github", "d-8", &body);
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("accepted already"), "{text}");
}

#[test]
fn pings_other_branches_and_other_files_do_nothing() {
    let (hooks, id, path) = start();
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let mut headers = signed("github", "p-1", ping, SECRET);
    headers[0].1 = "ping".into();
    let (status, text) = hooks.send(forwarded(&headers, ping));
    assert_eq!((status, text.starts_with("pong")), (200, true), "{text}");
    let after = hooks.s.edit_in_git(&id, "title: End", "title: Elsewhere");
    for (body, says) in [
        (
            listed_push("feature", &after, &[&path]),
            "ignored: a push to feature",
        ),
        (
            listed_push("main", &after, &["README.md"]),
            "the push changed no app file",
        ),
    ] {
        let (status, text) = hooks.push("gitlab", says, &body);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains(says), "{text}");
    }
    // Without a secret of its own the endpoint takes nothing.
    let body = listed_push("main", &after, &[&path]);
    let mut settings = hooks.settings();
    settings["webhook_secret"] = json!("short");
    let session = hooks.s.daemon.request(
        "invoke_endpoint",
        json!({"type": "endpoint", "settings": settings,
               "raw_http_request": forwarded(&signed("github", "s-1", &body, "short"), &body)}),
    );
    let messages = hooks.s.daemon.finish(&session);
    assert_eq!(messages[0]["data"]["status"], 503, "{messages:?}");
    // A secret pasted into the wrong field never reaches the Git host's delivery log.
    let mut settings = hooks.settings();
    settings["sign_in"] = json!("sk-pasted-in-the-wrong-field");
    let session = hooks.s.daemon.request(
        "invoke_endpoint",
        json!({"type": "endpoint", "settings": settings,
               "raw_http_request": forwarded(&signed("github", "s-2", &body, SECRET), &body)}),
    );
    let chunk = &hooks.s.daemon.finish(&session)[0]["data"];
    let answer =
        String::from_utf8(hex::decode(chunk["result"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(chunk["status"], 503, "{answer}");
    assert!(
        answer.contains("sign_in") && !answer.contains("sk-pasted"),
        "{answer}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks.title(), "End");
}

#[test]
fn a_push_that_removes_an_app_file_deletes_no_app() {
    let (hooks, _, path) = start();
    // Even where the target lets imports delete apps, a push is no person naming them.
    let mut settings = hooks.settings();
    settings["deletions"] = json!("remove_files_and_apps");
    let after = hooks.s.repo.commit(&[], &[&path], "Retire the report");
    let body = listed_push("main", &after, &[&path]);
    let session = hooks.s.daemon.request(
        "invoke_endpoint",
        json!({"type": "endpoint", "settings": settings,
               "raw_http_request": forwarded(&signed("github", "r-1", &body, SECRET), &body)}),
    );
    let messages = hooks.s.daemon.finish(&session);
    assert_eq!(messages[0]["data"]["status"], 202, "{messages:?}");
    let webhooks = hooks.s.dir.path().join("plugin-state/webhooks");
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let found = std::fs::read_dir(&webhooks).ok().and_then(|dirs| {
            dirs.flatten()
                .map(|d| d.path().join("last-import.json"))
                .find(|f| f.exists())
        });
        if let Some(file) = found {
            break std::fs::read_to_string(file).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            hooks.s.daemon.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let record: Value = serde_json::from_str(&record).unwrap();
    assert_eq!(record["after"], after.as_str(), "{record}");
    assert_eq!(
        record["report"]["to_confirm"],
        json!(["Report Workflow"]),
        "{record}"
    );
    assert!(record["report"]["deleted"].as_array().unwrap().is_empty());
    assert!(hooks
        .s
        .console
        .state()
        .apps
        .values()
        .any(|a| a.name == "Report Workflow"));
}
