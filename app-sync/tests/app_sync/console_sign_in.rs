//! The console client against the fake console of every sign-in era: JSON tokens before
//! 1.9.2, cookies and CSRF after (with and without `__Host-`), base64 passwords from 1.11.2,
//! the admin API key from 1.11.0, pasted sessions, and renewal after a 401.

use crate::support::fake_console::{FakeConsole, ADMIN_KEY, EMAIL, PASSWORD, WORKSPACE};
use app_git_sync::console::apps::Version;
use app_git_sync::console::sign_in::{DifyVersion, SignIn};
use app_git_sync::console::{Console, ConsoleError};

fn password() -> SignIn {
    SignIn::Password {
        email: EMAIL.into(),
        password: PASSWORD.into(),
    }
}

async fn signs_in(version: &str, host_prefix: bool) -> FakeConsole {
    let fake = FakeConsole::start(version);
    fake.state().host_prefix = host_prefix;
    fake.add_app("Support Bot", "advanced-chat", Vec::new());
    let console = Console::new(&fake.url, password()).unwrap();
    let apps = console.list_apps().await.unwrap();
    assert_eq!(apps.len(), 1, "{version}");
    assert_eq!(
        console.version().await,
        DifyVersion::parse(version),
        "{version}"
    );
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn password_sign_in_follows_each_version() {
    // 1.9.1: a raw password, JSON tokens, Bearer.
    let fake = signs_in("1.9.1", false).await;
    {
        let state = fake.state();
        let login = state.bodies.iter().find(|b| b.contains("email")).unwrap();
        assert!(login.contains(PASSWORD), "{login}");
        let last = state.requests.last().unwrap();
        assert!(last
            .header("authorization")
            .unwrap()
            .starts_with("Bearer acc-"));
    }

    // 1.10.1 on https: __Host- cookies, CSRF on every call, still a raw password.
    let fake = signs_in("1.10.1", true).await;
    {
        let state = fake.state();
        let last = state.requests.last().unwrap();
        let cookie = last.header("cookie").unwrap();
        assert!(cookie.contains("__Host-access_token=") && cookie.contains("__Host-csrf_token="));
        assert!(last.header("x-csrf-token").is_some());
    }

    // 1.11.2 and later: the password base64-encoded, plain cookie names over http.
    let fake = signs_in("1.13.2", false).await;
    let state = fake.state();
    let login = state.bodies.iter().find(|b| b.contains("email")).unwrap();
    assert!(!login.contains(PASSWORD), "sent raw: {login}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_named_without_echoing_it() {
    let fake = FakeConsole::start("1.13.2");
    let console = Console::new(
        &fake.url,
        SignIn::Password {
            email: EMAIL.into(),
            password: "wrong-secret-password".into(),
        },
    )
    .unwrap();
    let error = console.list_apps().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ConsoleError::SignIn(_)), "{error:?}");
    assert!(text.contains("incorrect") && text.contains(EMAIL), "{text}");
    assert!(!text.contains("wrong-secret-password"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_key_is_stateless_from_1_11_and_refused_before() {
    let fake = FakeConsole::start("1.11.1");
    fake.add_app("Flow", "workflow", Vec::new());
    let key = |workspace: &str| SignIn::AdminKey {
        key: ADMIN_KEY.into(),
        workspace_id: workspace.into(),
    };
    let console = Console::new(&fake.url, key(WORKSPACE)).unwrap();
    assert_eq!(console.list_apps().await.unwrap().len(), 1);
    assert_eq!(fake.state().logins, 0);

    let wrong = Console::new(&fake.url, key("00000000-0000-4000-8000-000000000000")).unwrap();
    let text = wrong.list_apps().await.unwrap_err().to_string();
    assert!(text.contains("ADMIN_API_KEY_ENABLE"), "{text}");
    assert!(!text.contains(ADMIN_KEY), "{text}");

    let old = FakeConsole::start("1.10.1");
    let console = Console::new(&old.url, key(WORKSPACE)).unwrap();
    let text = console.list_apps().await.unwrap_err().to_string();
    assert!(
        text.contains("1.11.0") && text.contains("e-mail and password"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_session_is_renewed_once() {
    for version in ["1.9.1", "1.13.2"] {
        let fake = FakeConsole::start(version);
        fake.add_app("Flow", "workflow", Vec::new());
        let console = Console::new(&fake.url, password()).unwrap();
        console.list_apps().await.unwrap();
        fake.state().expire_sessions();
        console.list_apps().await.unwrap();
        let state = fake.state();
        assert_eq!((state.logins, state.refreshes), (1, 1), "{version}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pasted_session_works_under_either_cookie_name_and_says_when_it_expired() {
    for host_prefix in [false, true] {
        let fake = FakeConsole::start("1.13.2");
        fake.state().host_prefix = host_prefix;
        fake.add_app("Flow", "workflow", Vec::new());
        // A browser session: what the login set as cookies.
        let (access, csrf) = {
            let mut state = fake.state();
            state
                .sessions
                .push(("acc-browser".into(), "csrf-browser".into()));
            ("acc-browser".to_string(), "csrf-browser".to_string())
        };
        let console = Console::new(
            &fake.url,
            SignIn::Session {
                access_token: access,
                refresh_token: String::new(),
                csrf_token: csrf,
            },
        )
        .unwrap();
        assert_eq!(console.list_apps().await.unwrap().len(), 1, "{host_prefix}");
        fake.state().expire_sessions();
        let text = console.list_apps().await.unwrap_err().to_string();
        assert!(text.contains("expired") && text.contains("paste"), "{text}");
        assert!(!text.contains("acc-browser"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_csrf_token_is_refused_like_dify_does() {
    let fake = FakeConsole::start("1.13.2");
    fake.state()
        .sessions
        .push(("acc-1".into(), "csrf-1".into()));
    let console = Console::new(
        &fake.url,
        SignIn::Session {
            access_token: "acc-1".into(),
            refresh_token: String::new(),
            csrf_token: String::new(),
        },
    )
    .unwrap();
    let error = console.list_apps().await.unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, ConsoleError::SignIn(_)), "{error:?}");
    assert!(
        text.contains("CSRF") && text.contains("csrf_token cookie"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_console_names_the_url_to_fix() {
    let console = Console::new("http://127.0.0.1:9", password()).unwrap();
    let text = console.list_apps().await.unwrap_err().to_string();
    assert!(
        text.contains("http://127.0.0.1:9") && text.contains("console URL"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pasted_session_is_renewed_through_its_refresh_token() {
    let fake = FakeConsole::start("1.13.2");
    fake.add_app("Flow", "workflow", Vec::new());
    {
        let mut state = fake.state();
        state.sessions.push(("acc-b".into(), "csrf-b".into()));
        state.refresh_tokens.push("ref-b".into());
    }
    let console = Console::new(
        &fake.url,
        SignIn::Session {
            access_token: "acc-b".into(),
            refresh_token: "ref-b".into(),
            csrf_token: "csrf-b".into(),
        },
    )
    .unwrap();
    console.list_apps().await.unwrap();
    fake.state().expire_sessions();
    assert_eq!(console.list_apps().await.unwrap().len(), 1);
    let state = fake.state();
    assert_eq!((state.logins, state.refreshes), (0, 1));
    // The refresh token went only to the refresh route, as a cookie.
    let refresh = state
        .requests
        .iter()
        .find(|r| r.target.ends_with("/refresh-token"))
        .unwrap();
    assert_eq!(
        refresh.header("cookie"),
        Some("refresh_token=ref-b; __Host-refresh_token=ref-b")
    );
    assert!(state
        .requests
        .iter()
        .filter(|r| !r.target.ends_with("/refresh-token"))
        .all(|r| !r.header("cookie").unwrap_or_default().contains("ref-b")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_quotes_requests_back_gets_no_secret_into_an_error() {
    let fake = FakeConsole::start("1.13.2");
    fake.state().echo_requests = true;
    let wrong = Console::new(
        &fake.url,
        SignIn::Password {
            email: EMAIL.into(),
            password: "hunter2-secret".into(),
        },
    )
    .unwrap();
    let text = wrong.list_apps().await.unwrap_err().to_string();
    assert!(text.contains("[hidden]"), "the echo did not happen: {text}");
    assert!(
        !text.contains("hunter2-secret") && !text.contains("aHVudGVyMi1zZWNyZXQ="),
        "{text}"
    );

    // Signed in, a refused call quotes the session's cookies and CSRF token: hidden too.
    let console = Console::new(&fake.url, password()).unwrap();
    console.list_apps().await.unwrap();
    let text = console
        .export_dsl("00000000-0000-4000-8000-00000000dead", Version::Draft)
        .await
        .unwrap_err()
        .to_string();
    let (access, csrf) = fake.state().sessions.last().unwrap().clone();
    assert!(text.contains("404"), "{text}");
    assert!(!text.contains(&access) && !text.contains(&csrf), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");

    // A refused deletion (an account that may not edit) is quoted back the same way.
    let app = fake.add_app("Kept", "workflow", Vec::new());
    fake.state().can_edit = false;
    let text = console.delete_app(&app).await.unwrap_err().to_string();
    let (access, csrf) = fake.state().sessions.last().unwrap().clone();
    assert!(text.contains("403") && text.contains("[hidden]"), "{text}");
    assert!(!text.contains(&access) && !text.contains(&csrf), "{text}");
    // An id that is no id never reaches a request path.
    let before = fake.state().requests.len();
    let hostile = console.delete_app("../../apps/other").await.unwrap_err();
    assert!(
        hostile.to_string().contains("is not an app or workflow id"),
        "{hostile}"
    );
    assert_eq!(fake.state().requests.len(), before);
    assert!(fake.state().apps.contains_key(&app));
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_gets_a_named_refusal_without_a_request() {
    let console = Console::new("http://127.0.0.1:9", password()).unwrap();
    for hostile in ["../../setup", "a b", "x?limit=1", &"a".repeat(65)] {
        let error = console
            .export_dsl(hostile, Version::Draft)
            .await
            .unwrap_err();
        assert!(
            matches!(error, ConsoleError::Malformed { .. }),
            "{hostile}: {error:?}"
        );
    }
    for url in [
        "api:5001",
        "ftp://dify",
        "http://u:pw-secret@[::1",
        "https://dify.example.com/?a=1",
    ] {
        let message = Console::new(url, password()).unwrap_err();
        assert!(!message.contains("pw-secret"), "{message}");
    }
}

/// No credential of the console follows a redirect to another origin (301, 302, 307, 308):
/// not the password in a replayed login body, not the key, the CSRF token or the workspace id
/// in headers. The recording server there gets nothing, and the error names both origins.
#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_to_another_origin_gets_no_credential() {
    use crate::support::loopback_http::{redirecting, Recorder};
    for code in [301, 302, 307, 308] {
        for sign_in in [
            password(),
            SignIn::AdminKey {
                key: ADMIN_KEY.into(),
                workspace_id: WORKSPACE.into(),
            },
        ] {
            let recorder = Recorder::start();
            // `/system-features` answers; every other route is redirected.
            let features = std::sync::Arc::new(|_: &_, _: &_| {
                hyper::Response::builder()
                    .header("X-Version", "1.13.2")
                    .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
                        b"{}",
                    )))
                    .unwrap()
            });
            let server = redirecting(code, "/system-features", recorder.origin(), features);
            let features_route = format!("http://127.0.0.1:{}", server.port);
            let console = Console::new(&features_route, sign_in).unwrap();
            let text = console.list_apps().await.unwrap_err().to_string();
            assert!(
                text.contains(&recorder.origin()) && text.contains(&features_route),
                "{code}: {text}"
            );
            assert!(recorder.seen().is_empty(), "{code}: {:?}", recorder.seen());
            assert!(!text.contains(PASSWORD) && !text.contains(ADMIN_KEY));
        }
    }
}

/// A server that answers with 2,000 `Set-Cookie` headers did answer: it is named as an answer
/// that cannot be read, not as a console that cannot be reached.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_with_too_many_headers_is_not_called_unreachable() {
    use crate::support::loopback_http::LoopbackServer;
    let server = LoopbackServer::start(std::sync::Arc::new(|_: &_, _: &_| {
        let mut response = hyper::Response::builder().header("X-Version", "1.13.2");
        for i in 0..2000 {
            response = response.header("Set-Cookie", format!("c{i}=v; Path=/"));
        }
        response
            .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
                b"{}",
            )))
            .unwrap()
    }));
    let console = Console::new(&format!("http://127.0.0.1:{}", server.port), password()).unwrap();
    let text = console.list_apps().await.unwrap_err().to_string();
    assert!(
        text.contains("headers that cannot be read") && !text.contains("cannot reach"),
        "{text}"
    );
}
