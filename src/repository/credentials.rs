//! The credentials a Dify authorization holds, read from a request and checked for format.
//! Secrets never appear in a message: problems name the field and the fix only.

use std::fmt;

use dify_plugin::protocol::wire::json_kind;
use git_remote::credentials::given;
pub use git_remote::credentials::CredentialProblem;
use git_remote::GitCredentials;
use serde_json::{Map, Value};

/// What the provider's `credentials_schema` declares; empty strings mean "not given".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// How to reach the repository.
    pub git: GitCredentials,
    /// The Knowledge API's base URL (empty: [`DEFAULT_DIFY_API_URL`]).
    pub dify_api_url: String,
    /// A Knowledge API key (`dataset-…`); mirroring is on when it and a knowledge base id are set.
    pub dify_api_key: String,
}

/// Dify's API as the plugin daemon's container reaches it in Dify's docker compose.
pub const DEFAULT_DIFY_API_URL: &str = "http://api:5001/v1";

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("git", &self.git)
            .field("dify_api_url", &given(&self.dify_api_url))
            .field("dify_api_key", &given(&self.dify_api_key))
            .finish()
    }
}

const FIELDS: [&str; 8] = [
    "access_token",
    "username",
    "ssh_private_key",
    "ssh_passphrase",
    "ssh_known_hosts",
    "ca_certificate",
    "dify_api_url",
    "dify_api_key",
];

impl Credentials {
    /// Reads the request's `credentials` object (absent or null means none). Values must be
    /// strings, as Dify stores them; unknown keys are ignored.
    pub fn from_request(value: Option<&Value>) -> Result<Self, Vec<CredentialProblem>> {
        let empty = Map::new();
        let object = match value {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(object)) => object,
            Some(_) => {
                return Err(vec![CredentialProblem {
                    field: "credentials",
                    message: "must be an object of credential fields".into(),
                }])
            }
        };
        let mut problems = Vec::new();
        let mut read = |field: &'static str| match object.get(field) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                problems.push(CredentialProblem {
                    field,
                    message: format!("must be text, not {}", json_kind(other)),
                });
                String::new()
            }
        };
        let [access_token, username, ssh_private_key, ssh_passphrase, ssh_known_hosts, ca_certificate, dify_api_url, dify_api_key] =
            FIELDS.map(&mut read);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Credentials {
            git: GitCredentials {
                access_token: access_token.trim().to_string(),
                username: username.trim().to_string(),
                ssh_private_key,
                ssh_passphrase,
                ssh_known_hosts,
                ca_certificate,
            },
            dify_api_url: dify_api_url.trim().to_string(),
            dify_api_key: dify_api_key.trim().to_string(),
        })
    }

    /// The Knowledge API base URL to use.
    pub fn api_url(&self) -> &str {
        match self.dify_api_url.is_empty() {
            true => DEFAULT_DIFY_API_URL,
            false => &self.dify_api_url,
        }
    }

    /// Checks the format of every given field; an empty list means all is well.
    pub fn problems(&self) -> Vec<CredentialProblem> {
        let mut problems = self.git.problems();
        let mut problem = |field: &'static str, message: String| {
            problems.push(CredentialProblem { field, message })
        };
        if let Err(message) = crate::dify::knowledge::normalize_base(self.api_url()) {
            problem("dify_api_url", message);
        }
        let key = &self.dify_api_key;
        if key.chars().any(char::is_whitespace) {
            problem(
                "dify_api_key",
                "contains spaces or line breaks; paste only the key".into(),
            );
        } else if key.starts_with("app-") {
            problem(
                "dify_api_key",
                "is an app API key; mirroring needs a Knowledge API key (Knowledge → API → API \
                 Key, it starts with dataset-)"
                    .into(),
            );
        } else if !key.is_empty() && !key.starts_with("dataset-") {
            problem(
                "dify_api_key",
                "is not a Knowledge API key; create one under Knowledge → API → API Key (it \
                 starts with dataset-)"
                    .into(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_string_values_are_refused_by_name() {
        let value = serde_json::json!({"access_token": 42, "username": null});
        let problems = Credentials::from_request(Some(&value)).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "access_token");
    }

    #[test]
    fn empty_credentials_are_fine() {
        let credentials = Credentials::from_request(Some(&serde_json::json!({}))).unwrap();
        assert!(credentials.problems().is_empty());
        assert_eq!(
            Credentials::from_request(None).unwrap(),
            Credentials::default()
        );
    }

    #[test]
    fn knowledge_api_settings_are_checked_for_shape() {
        let with = |url: &str, key: &str| Credentials {
            dify_api_url: url.into(),
            dify_api_key: key.into(),
            ..Credentials::default()
        };
        assert!(with("", "dataset-abc").problems().is_empty());
        assert_eq!(with("", "").api_url(), DEFAULT_DIFY_API_URL);
        let fields = |c: Credentials| -> Vec<&'static str> {
            c.problems().iter().map(|p| p.field).collect()
        };
        assert_eq!(fields(with("api:5001", "dataset-abc")), ["dify_api_url"]);
        let app_key = with("", "app-abc").problems();
        assert!(app_key[0].message.contains("app API key") && !app_key[0].message.contains("abc"));
        assert_eq!(fields(with("", "sk-123")), ["dify_api_key"]);
        assert_eq!(fields(with("", "dataset-a b")), ["dify_api_key"]);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let credentials = Credentials {
            git: GitCredentials {
                access_token: "tok-secret".into(),
                ..GitCredentials::default()
            },
            dify_api_key: "dataset-secret".into(),
            dify_api_url: "https://user:pw-secret@dify.example.com/v1".into(),
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("tok-secret") && !shown.contains("dataset-secret"));
        assert!(!shown.contains("pw-secret"));
    }
}
