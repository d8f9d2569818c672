//! Signing in to Dify, every way it allows (`docs/app-dsl.md` §1): the admin API key (1.11+),
//! e-mail and password (JSON tokens before 1.9.2, cookies and a CSRF token from 1.9.2, a
//! base64 password from 1.11.2, chosen from the server's `X-Version`), a pasted browser
//! session, or an OpenAPI token (1.15+, `OPENAPI_ENABLED`; see `openapi.rs`). Cookies are handled by hand: a compliant jar would drop the
//! `__Host-` and `Secure` ones over `http://api:5001`.

use std::fmt;

use base64::Engine;

/// How the operator chose to sign in.
#[derive(Clone, PartialEq, Eq)]
pub enum SignIn {
    AdminKey {
        key: String,
        workspace_id: String,
    },
    Password {
        email: String,
        password: String,
    },
    Session {
        access_token: String,
        refresh_token: String,
        csrf_token: String,
    },
    /// A bearer token of Dify's OpenAPI (`dfoa_…`, minted by the device flow), for its
    /// workspace `workspace_id` (empty: the token's current one). `fallback` signs in to the
    /// console API where the server's OpenAPI is off.
    OpenApi {
        token: String,
        workspace_id: String,
        fallback: Option<Box<SignIn>>,
    },
}

impl SignIn {
    /// How it signs in, for messages: never a secret.
    pub fn describe(&self) -> &'static str {
        match self {
            SignIn::AdminKey { .. } => "the admin API key",
            SignIn::Password { .. } => "e-mail and password",
            SignIn::Session { .. } => "a pasted browser session",
            SignIn::OpenApi { .. } => "an OpenAPI token",
        }
    }

    /// Every secret it holds, as it could appear in text.
    pub fn secrets(&self) -> Vec<String> {
        match self {
            SignIn::AdminKey { key, .. } => vec![key.clone()],
            SignIn::Password { password, .. } => {
                vec![password.clone(), login_password(password, None)]
            }
            SignIn::Session {
                access_token,
                refresh_token,
                csrf_token,
            } => vec![
                access_token.clone(),
                refresh_token.clone(),
                csrf_token.clone(),
            ],
            SignIn::OpenApi {
                token, fallback, ..
            } => std::iter::once(token.clone())
                .chain(fallback.iter().flat_map(|f| f.secrets()))
                .collect(),
        }
    }
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignIn::AdminKey { workspace_id, .. } => {
                write!(f, "SignIn::AdminKey(workspace {workspace_id})")
            }
            SignIn::Password { email, .. } => write!(f, "SignIn::Password({email})"),
            SignIn::Session { .. } => write!(f, "SignIn::Session"),
            SignIn::OpenApi {
                workspace_id,
                fallback,
                ..
            } => write!(
                f,
                "SignIn::OpenApi(workspace {workspace_id:?}, fallback {:?})",
                fallback
            ),
        }
    }
}

/// A Dify release, from `X-Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DifyVersion(pub u32, pub u32, pub u32);

impl DifyVersion {
    /// Login answers with cookies and every call needs the CSRF token (PR #24365).
    pub const COOKIES: DifyVersion = DifyVersion(1, 9, 2);
    /// The login password must be base64-encoded (PR #29659).
    pub const BASE64_PASSWORD: DifyVersion = DifyVersion(1, 11, 2);
    /// The admin API key exists (PR #29139).
    pub const ADMIN_KEY: DifyVersion = DifyVersion(1, 11, 0);

    /// `1.13.2`, `1.13.2-rc1`, ` 1.9 `; `None` for anything else.
    pub fn parse(text: &str) -> Option<DifyVersion> {
        let core = text.trim().split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(0))?;
        let patch = parts.next().unwrap_or(Some(0))?;
        match parts.next() {
            None => Some(DifyVersion(major, minor, patch)),
            Some(_) => None,
        }
    }
}

impl fmt::Display for DifyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// What a signed-in request carries.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `Authorization: Bearer` (admin key with `X-WORKSPACE-ID`, or a pre-1.9.2 token).
    Bearer {
        token: String,
        workspace_id: Option<String>,
        refresh_token: Option<String>,
    },
    /// The console's cookies, replayed under the names the server set, plus `X-CSRF-Token`.
    Cookies(CookieSet),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Bearer { .. } => write!(f, "Credential::Bearer"),
            Credential::Cookies(_) => write!(f, "Credential::Cookies"),
        }
    }
}

/// Cookies by exact name (`access_token` or `__Host-access_token`, …).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CookieSet {
    pub cookies: Vec<(String, String)>,
}

impl CookieSet {
    /// Reads `Set-Cookie` headers: name and value of each, attributes ignored.
    pub fn from_set_cookie<'a>(headers: impl Iterator<Item = &'a str>) -> CookieSet {
        let mut set = CookieSet::default();
        for header in headers {
            let pair = header.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                let (name, value) = (name.trim(), value.trim().trim_matches('"'));
                if !name.is_empty() {
                    set.put(name, value);
                }
            }
        }
        set
    }

    /// A pasted session: each value under both names, since which one the server reads
    /// depends on its https and cookie-domain settings; the other is ignored.
    pub fn pasted(access: &str, refresh: &str, csrf: &str) -> CookieSet {
        let mut set = CookieSet::default();
        for (name, value) in [
            ("access_token", access),
            ("refresh_token", refresh),
            ("csrf_token", csrf),
        ] {
            if !value.is_empty() {
                set.put(name, value);
                set.put(&format!("__Host-{name}"), value);
            }
        }
        set
    }

    pub fn put(&mut self, name: &str, value: &str) {
        match self.cookies.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = value.to_string(),
            None => self.cookies.push((name.to_string(), value.to_string())),
        }
    }

    /// Takes over every cookie `other` sets (a refresh sets new tokens).
    pub fn merge(&mut self, other: &CookieSet) {
        for (name, value) in &other.cookies {
            self.put(name, value);
        }
    }

    /// The value of `access_token`, `refresh_token` or `csrf_token`, with or without `__Host-`.
    pub fn get(&self, base: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, v)| (n == base || n.strip_prefix("__Host-") == Some(base)) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// The `Cookie` header for an API call: the access and CSRF cookies.
    pub fn header(&self, names: &[&str]) -> String {
        self.cookies
            .iter()
            .filter(|(n, _)| names.contains(&n.trim_start_matches("__Host-")))
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The login body's password: base64 from 1.11.2 (and when the version is unknown, since
/// every current release wants it), plain before.
pub fn login_password(password: &str, version: Option<DifyVersion>) -> String {
    match version {
        Some(v) if v < DifyVersion::BASE64_PASSWORD => password.to_string(),
        _ => base64::engine::general_purpose::STANDARD.encode(password),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(DifyVersion::parse("1.13.2"), Some(DifyVersion(1, 13, 2)));
        assert_eq!(
            DifyVersion::parse(" 1.9.2-rc1 "),
            Some(DifyVersion(1, 9, 2))
        );
        assert_eq!(DifyVersion::parse("1.10"), Some(DifyVersion(1, 10, 0)));
        assert_eq!(DifyVersion::parse("latest"), None);
        assert_eq!(DifyVersion::parse("1.2.3.4"), None);
        assert!(DifyVersion(1, 9, 1) < DifyVersion::COOKIES);
        assert!(DifyVersion(1, 10, 0) > DifyVersion::COOKIES);
    }

    #[test]
    fn set_cookie_headers_keep_their_exact_names() {
        let set = CookieSet::from_set_cookie(
            [
                "__Host-access_token=a.b.c; Path=/; HttpOnly; Secure; SameSite=Lax",
                "__Host-csrf_token=x.y.z; Path=/; Secure",
                "refresh_token=r1; Path=/console/api/refresh-token; HttpOnly",
            ]
            .into_iter(),
        );
        assert_eq!(set.get("access_token"), Some("a.b.c"));
        assert_eq!(set.get("csrf_token"), Some("x.y.z"));
        assert_eq!(set.get("refresh_token"), Some("r1"));
        assert_eq!(
            set.header(&["access_token", "csrf_token"]),
            "__Host-access_token=a.b.c; __Host-csrf_token=x.y.z"
        );
    }

    #[test]
    fn passwords_are_base64_from_1_11_2() {
        assert_eq!(login_password("pw", Some(DifyVersion(1, 11, 1))), "pw");
        assert_eq!(login_password("pw", Some(DifyVersion(1, 11, 2))), "cHc=");
        assert_eq!(login_password("pw", None), "cHc=");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let shown = format!(
            "{:?}",
            SignIn::Password {
                email: "a@b.c".into(),
                password: "hunter2".into()
            }
        );
        assert!(!shown.contains("hunter2"));
        let shown = format!(
            "{:?}",
            SignIn::AdminKey {
                key: "adm-secret".into(),
                workspace_id: "w".into()
            }
        );
        assert!(!shown.contains("adm-secret"));
        let token = SignIn::OpenApi {
            token: "dfoa_secret".into(),
            workspace_id: String::new(),
            fallback: Some(Box::new(SignIn::Password {
                email: "a@b.c".into(),
                password: "hunter2".into(),
            })),
        };
        let shown = format!("{token:?}");
        assert!(
            !shown.contains("dfoa_secret") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(token.secrets().contains(&"dfoa_secret".to_string()));
        assert!(token.secrets().contains(&"hunter2".to_string()));
    }

    proptest! {
        #[test]
        fn any_set_cookie_text_is_read_without_panicking(headers in prop::collection::vec("\\PC{0,80}", 0..6)) {
            let set = CookieSet::from_set_cookie(headers.iter().map(String::as_str));
            prop_assert!(set.cookies.len() <= headers.len());
        }
    }
}
