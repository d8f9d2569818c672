//! Exports pushed to real Git servers on loopback: smart HTTP over TLS with a token, and
//! `sshd` with a key; a push the server refuses leaves the sync state where it was, and no
//! credential reaches an error or the log.

use crate::support::app_scenario::{failure, outputs, AppScenario};
use crate::support::git_servers::{git, HttpServer, SshServer, TestRepo, TOKEN};
use crate::support::keys::ssh_keygen;
use serde_json::json;

/// A repository the HTTPS server serves and accepts pushes to (with the token).
fn served_repo(server: &HttpServer, name: &str) -> TestRepo {
    let repo = TestRepo::create(
        &server.root.join("private"),
        name,
        &[("README.md", b"# apps\n")],
    );
    git(&repo.bare, &["config", "http.receivepack", "true"]);
    repo
}

#[test]
fn exports_push_over_https_with_a_token() {
    let s = AppScenario::start();
    let server = HttpServer::start(&s.dir.path().join("https"));
    let repo = served_repo(&server, "apps");
    let mut credentials = s.credentials();
    credentials["repository_url"] = json!(server.https_url("private", "apps"));
    credentials["git_access_token"] = json!(TOKEN);
    credentials["ca_certificate"] = json!(server.ca.ca_pem);

    let (text, report) = outputs(&s.tool_with("export_apps", json!({}), credentials.clone()));
    let commit = report["commit"].as_str().unwrap();
    assert_eq!(git(&repo.bare, &["rev-parse", "main"]), commit, "{text}");

    // A server that refuses the push: the error says so, the state stays, nothing leaks.
    s.console.retitle("Report Workflow", "Changed");
    let hook = repo.bare.join("hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\necho 'pushes are frozen' >&2\nexit 1\n").unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let error = failure(&s.tool_with("export_apps", json!({}), credentials.clone()));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("refused") && message.contains("pushes are frozen"),
        "{message}"
    );
    // A type Dify shows as text (not as the raw JSON of an error it does not know).
    assert_eq!(error["error_type"], "InvokeBadRequestError");
    assert_eq!(error["args"]["kind"], "git");
    assert!(!message.contains(TOKEN) && !s.daemon.stderr_text().contains(TOKEN));
    assert_eq!(git(&repo.bare, &["rev-parse", "main"]), commit);
    let (_, status) = outputs(&s.tool_with(
        "sync_status",
        json!({"apps": "Report Workflow"}),
        credentials.clone(),
    ));
    assert_eq!(status["apps"][0]["state"], "changed_in_dify");
    std::fs::remove_file(&hook).unwrap();
    let (text, report) = outputs(&s.tool_with("export_apps", json!({}), credentials.clone()));
    assert_eq!(report["exported"].as_array().unwrap().len(), 1, "{text}");

    // Without the token the server asks for a login: named, and nothing is pushed.
    credentials["git_access_token"] = json!("");
    let error = failure(&s.tool_with("export_apps", json!({}), credentials));
    assert!(
        error["message"].as_str().unwrap().contains("access_token"),
        "{error}"
    );
    assert_eq!(error["error_type"], "InvokeAuthorizationError");
}

#[test]
fn exports_push_over_ssh_with_a_key() {
    let s = AppScenario::start();
    let keys = s.dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let (private, public) = ssh_keygen(&keys, "deploy", &["-t", "ed25519"], "");
    let server = SshServer::start(&s.dir.path().join("sshd"), &[public.trim()]);
    let repo = TestRepo::create(
        &s.dir.path().join("ssh-repos"),
        "apps",
        &[("README.md", b"# apps\n")],
    );
    let mut credentials = s.credentials();
    credentials["repository_url"] = json!(server.url(&repo.bare));
    credentials["ssh_private_key"] = json!(private);
    credentials["ssh_known_hosts"] = json!(server.known_hosts_line());
    let (text, report) = outputs(&s.tool_with("export_apps", json!({}), credentials.clone()));
    let commit = report["commit"].as_str().unwrap();
    assert_eq!(git(&repo.bare, &["rev-parse", "main"]), commit, "{text}");
    let (_, history) =
        outputs(&s.tool_with("app_history", json!({"app": "Support Flow"}), credentials));
    assert_eq!(history["commits"].as_array().unwrap().len(), 1);
}
