//! The fourth sign-in, Dify's OpenAPI (1.15+, `OPENAPI_ENABLED`), against the fake: a token
//! lists, exports and imports through `/openapi/v1` only; what the OpenAPI cannot do (publish,
//! published versions) is refused before anything changes; a server without it falls back to
//! the console API with e-mail and password, and says so; the rate limit is waited out; the
//! device flow gets a token (approved, denied, unknown client) without showing its code.

use std::process::Command;

use crate::support::fake_console::{FakeConsole, EMAIL, PASSWORD, WORKSPACE};
use crate::support::fake_openapi::{OpenApiState, TOKEN, USER_CODE};
use crate::support::git_servers::TestRepo;
use crate::support::plugin_under_test::BINARY;
use app_git_sync::console::apps::Version;
use app_git_sync::console::sign_in::SignIn;
use app_git_sync::console::{Console, ConsoleError, Surface};

fn token(fallback: bool) -> SignIn {
    SignIn::OpenApi {
        token: TOKEN.into(),
        workspace_id: String::new(),
        fallback: fallback.then(|| {
            Box::new(SignIn::Password {
                email: EMAIL.into(),
                password: PASSWORD.into(),
            })
        }),
    }
}

fn with_openapi() -> FakeConsole {
    let fake = FakeConsole::start("1.16.1");
    fake.state().openapi = Some(OpenApiState::default());
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_does_everything_through_the_openapi() {
    let fake = with_openapi();
    let id = fake.add_app("Report Workflow", "workflow", Vec::new());
    fake.add_app("Support Bot", "chat", Vec::new());
    let console = Console::new(&fake.url, token(true)).unwrap();

    let apps = console.list_apps().await.unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(
        console.surface().await.unwrap(),
        Surface::OpenApi {
            workspace_id: WORKSPACE.into(),
            workspace_name: "Owner's Workspace".into()
        }
    );
    let through = console.signed_in_through().await.unwrap();
    assert!(
        through.contains("1.16.1")
            && through.contains("OpenAPI")
            && through.contains("Owner's Workspace"),
        "{through}"
    );
    let dsl = console.export_dsl(&id, Version::Draft).await.unwrap();
    assert!(dsl.contains("Report Workflow"));
    let outcome = console
        .import_dsl(&dsl.replace("title: End", "title: Done"), Some(&id))
        .await
        .unwrap();
    assert_eq!(outcome.status, "completed");
    assert_eq!(
        fake.state().app("Report Workflow").graph["nodes"][1]["data"]["title"],
        "Done"
    );
    // A newer DSL waits for confirmation, under the workspace's route.
    let pending = console
        .import_dsl(&dsl.replace("version: 0.7.0", "version: 0.9.0"), Some(&id))
        .await
        .unwrap();
    assert_eq!(pending.status, "pending");
    let confirmed = console.confirm_import(&pending.import_id).await.unwrap();
    assert_eq!(confirmed.status, "completed");
    assert!(console.missing_dependencies(&id).await.unwrap().is_empty());

    let state = fake.state();
    assert!(state.logins == 0, "no console login");
    for request in &state.requests {
        assert!(
            request.target.starts_with("/openapi/v1/"),
            "{}",
            request.target
        );
    }
    let signed: Vec<_> = state
        .requests
        .iter()
        .filter(|r| r.target != "/openapi/v1/_version")
        .collect();
    assert!(signed
        .iter()
        .all(|r| r.header("authorization") == Some(&format!("Bearer {TOKEN}"))));
    assert!(state.requests.iter().any(|r| r
        .target
        .ends_with(&format!("/imports/{}:confirm", pending.import_id))));
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_openapi_cannot_do_is_refused_before_anything_changes() {
    let fake = with_openapi();
    let id = fake.add_app("Report Workflow", "workflow", Vec::new());
    let console = Console::new(&fake.url, token(false)).unwrap();
    let refused = console.can_publish().await.unwrap_err();
    assert!(
        matches!(&refused, ConsoleError::Unsupported(m) if m.contains("publish") && m.contains("nothing was imported")),
        "{refused}"
    );
    let refused = console
        .export_dsl(&id, Version::Published)
        .await
        .unwrap_err();
    assert!(matches!(refused, ConsoleError::Unsupported(_)), "{refused}");
    assert_eq!(console.published_versions(&id).await.unwrap(), None);
    // An app nobody has opened: the OpenAPI answers 404, named as Dify said it.
    fake.state().app_mut("Report Workflow").no_draft = true;
    let missing = console.export_dsl(&id, Version::Draft).await.unwrap_err();
    assert!(
        matches!(&missing, ConsoleError::Refused { status: 404, message, .. } if message.contains("Workflow not found")),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_or_workspace_is_named_and_never_shown() {
    let fake = with_openapi();
    fake.state().openapi.as_mut().unwrap().tokens.clear();
    let console = Console::new(&fake.url, token(false)).unwrap();
    let refused = console.list_apps().await.unwrap_err().to_string();
    assert!(refused.contains("refused the OpenAPI token"), "{refused}");
    assert!(!refused.contains(TOKEN), "{refused}");

    let fake = with_openapi();
    let elsewhere = SignIn::OpenApi {
        token: TOKEN.into(),
        workspace_id: "00000000-0000-4000-8000-000000000000".into(),
        fallback: None,
    };
    let console = Console::new(&fake.url, elsewhere).unwrap();
    let refused = console.list_apps().await.unwrap_err().to_string();
    assert!(
        refused.contains("not a member of workspace") && refused.contains("Owner's Workspace"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_openapi_the_console_api_is_used_and_said() {
    let fake = FakeConsole::start("1.16.1");
    fake.add_app("Report Workflow", "workflow", Vec::new());
    let console = Console::new(&fake.url, token(true)).unwrap();
    assert_eq!(console.list_apps().await.unwrap().len(), 1);
    assert_eq!(
        console.surface().await.unwrap(),
        Surface::Console { openapi_off: true }
    );
    let through = console.signed_in_through().await.unwrap();
    assert!(
        through.contains("console API with e-mail and password")
            && through.contains("OPENAPI_ENABLED"),
        "{through}"
    );
    assert_eq!(fake.state().logins, 1);

    let console = Console::new(&fake.url, token(false)).unwrap();
    let refused = console.list_apps().await.unwrap_err().to_string();
    assert!(
        refused.contains("has no OpenAPI") && refused.contains("OPENAPI_ENABLED=true"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_is_waited_out() {
    let fake = with_openapi();
    fake.add_app("Report Workflow", "workflow", Vec::new());
    fake.state().openapi.as_mut().unwrap().limit_after = Some(2);
    let console = Console::new(&fake.url, token(false)).unwrap();
    let started = std::time::Instant::now();
    assert_eq!(console.list_apps().await.unwrap().len(), 1);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    let state = fake.state();
    let lists = state
        .requests
        .iter()
        .filter(|r| r.target.starts_with("/openapi/v1/apps?"))
        .count();
    assert_eq!(lists, 2, "the limited call is made again once");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_device_flow_gets_a_token_or_says_why_not() {
    let fake = with_openapi();
    let console = Console::new(&fake.url, token(false)).unwrap();
    let mut shown = None;
    let got = console
        .device_login("app-git-sync on a test", |prompt| {
            shown = Some(prompt.clone())
        })
        .await
        .unwrap();
    assert_eq!(got, TOKEN);
    let prompt = shown.unwrap();
    assert_eq!(prompt.user_code, USER_CODE);
    assert_eq!(prompt.verification_uri, "http://console.example/device");

    fake.state().openapi.as_mut().unwrap().approve = false;
    let denied = console
        .device_login("x", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("denied"), "{denied}");
    assert!(!denied.contains("dc-secret-device-code"), "{denied}");

    fake.state().openapi.as_mut().unwrap().known_clients = vec!["difyctl".into()];
    let unknown = console
        .device_login("x", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("OPENAPI_KNOWN_CLIENT_IDS") && unknown.contains("app-git-sync"),
        "{unknown}"
    );

    let off = FakeConsole::start("1.16.1");
    let console = Console::new(&off.url, token(false)).unwrap();
    let none = console
        .device_login("x", |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(none.contains("OPENAPI_ENABLED=true"), "{none}");
}

/// The command line with the OpenAPI sign-in and no token: the device flow's code and URL on
/// stderr, then the run, which says how it signed in.
#[test]
fn the_command_line_signs_in_by_the_device_flow() {
    let dir = tempfile::tempdir().unwrap();
    let fake = with_openapi();
    fake.add_app("Report Workflow", "workflow", Vec::new());
    let repo = TestRepo::create(dir.path(), "apps", &[("README.md", b"# apps\n")]);
    let output = Command::new(BINARY)
        .arg("export")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("HOME", dir.path())
        .env("APP_GIT_SYNC_CONSOLE_URL", &fake.url)
        .env("APP_GIT_SYNC_SIGN_IN", "openapi_token")
        .env("APP_GIT_SYNC_REPOSITORY_URL", &repo.bare)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(USER_CODE) && stderr.contains("http://console.example/device"),
        "{stderr}"
    );
    assert!(
        stderr.contains("signed in through Dify 1.16.1's OpenAPI"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN) && !stderr.contains("dc-secret-device-code"));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Exported 1 app(s)"));
}

/// A server that redirects the token's first signed call to another origin: the token never
/// reaches it, and the error names both origins without the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_origin_never_receives_the_token() {
    use crate::support::loopback_http::{redirecting, Recorder};
    for code in [301, 302, 307, 308] {
        let recorder = Recorder::start();
        // `/_version` answers (the OpenAPI is on); every signed call is redirected.
        let version = std::sync::Arc::new(|_: &_, _: &_| {
            hyper::Response::builder()
                .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
                    br#"{"version": "1.16.1"}"#,
                )))
                .unwrap()
        });
        let server = redirecting(code, "/_version", recorder.origin(), version);
        let url = format!("http://127.0.0.1:{}", server.port);
        let console = Console::new(&url, token(false)).unwrap();
        let text = console.list_apps().await.unwrap_err().to_string();
        assert!(
            text.contains(&recorder.origin()) && text.contains(&url),
            "{code}: {text}"
        );
        assert!(recorder.seen().is_empty(), "{code}: {:?}", recorder.seen());
        assert!(!text.contains(TOKEN), "{text}");
    }
}

/// A hostile server's workspace ids (`../../x`, `a&b`) are no workspace: none goes into a
/// route, and the sign-in says it found none it can use.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_workspace_id_never_reaches_a_route() {
    use crate::support::loopback_http::LoopbackServer;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let server = LoopbackServer::start(std::sync::Arc::new(
        move |parts: &hyper::http::request::Parts, _: &_| {
            log.lock().unwrap().push(parts.uri.to_string());
            let body: &'static [u8] = match parts.uri.path() {
                "/openapi/v1/_version" => br#"{"version": "1.16.1"}"#,
                _ => {
                    br#"{"workspaces": [{"id": "../../x", "name": "Evil", "current": true},
                                    {"id": "a&b=c", "name": "Other", "current": false}],
                     "data": [], "has_more": false}"#
                }
            };
            hyper::Response::builder()
                .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
                    body,
                )))
                .unwrap()
        },
    ));
    let console = Console::new(&format!("http://127.0.0.1:{}", server.port), token(false)).unwrap();
    let refused = console.list_apps().await.unwrap_err().to_string();
    assert!(refused.contains("0 workspaces"), "{refused}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, ["/openapi/v1/_version", "/openapi/v1/workspaces"]);
}
