//! The provider's credentials (Dify sign-in and Git repository), read from a tool request or
//! from `APP_GIT_SYNC_*` environment variables, and checked for format. Secrets never appear
//! in a message: problems name the field and the fix.

use std::fmt;

use git_remote::{CredentialProblem, GitCredentials};
use serde_json::{Map, Value};

use crate::console::normalize_console_url;
use crate::console::sign_in::SignIn;

/// Everything one sync needs to know.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub console_url: String,
    pub sign_in: SignIn,
    pub repository_url: String,
    pub branch: String,
    /// Where the apps live in the repository (empty: the root).
    pub directory: String,
    /// The environment this Dify is (`.dify-sync/environments/<name>.yaml`); empty: none.
    pub environment: String,
    /// What an export does with a secret found inside an app.
    pub secrets_in_git: SecretsInGit,
    /// Whether a deletion on one side is carried to the other.
    pub deletions: Deletions,
    pub git: GitCredentials,
}

/// Whether a deletion on one side is carried to the other (opt-in per target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deletions {
    /// Nothing is deleted: an app deleted in Dify keeps its file, an app whose file was
    /// removed in Git stays in Dify.
    #[default]
    Keep,
    /// The next export removes the file of an app deleted in Dify, if it did not change in
    /// Git since the last sync.
    RemoveFiles,
    /// That, and an import deletes in Dify an app whose file was removed in Git, when the
    /// app did not change in Dify since the last sync and the run names it (`delete_apps`).
    RemoveFilesAndApps,
}

impl Deletions {
    pub fn removes_files(self) -> bool {
        self != Deletions::Keep
    }

    pub fn deletes_apps(self) -> bool {
        self == Deletions::RemoveFilesAndApps
    }
}

/// What happens to a secret Dify exports inside an app (see `secrets.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecretsInGit {
    /// `[__SECRET__:<node>/<field>]` in Git; the app's current value put back on import.
    #[default]
    Placeholder,
    /// The app is not written to Git at all.
    Refuse,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("sign_in", &self.sign_in)
            .field("branch", &self.branch)
            .field("directory", &self.directory)
            .field("environment", &self.environment)
            .field("git", &self.git)
            .finish_non_exhaustive()
    }
}

/// The credential names, as `provider/app_git_sync.yaml` declares them.
pub const FIELDS: [&str; 22] = [
    "console_url",
    "sign_in",
    "openapi_token",
    "admin_api_key",
    "workspace_id",
    "email",
    "password",
    "session_access_token",
    "session_refresh_token",
    "session_csrf_token",
    "repository_url",
    "branch",
    "directory",
    "environment",
    "secrets_in_git",
    "deletions",
    "git_access_token",
    "git_username",
    "ssh_private_key",
    "ssh_passphrase",
    "ssh_known_hosts",
    "ca_certificate",
];

/// Fields whose value is trimmed (the others are keys and certificates, kept as pasted).
const TRIMMED: [&str; 16] = [
    "console_url",
    "sign_in",
    "openapi_token",
    "admin_api_key",
    "workspace_id",
    "email",
    "session_access_token",
    "session_refresh_token",
    "session_csrf_token",
    "repository_url",
    "branch",
    "directory",
    "environment",
    "secrets_in_git",
    "deletions",
    "git_username",
];

impl Settings {
    /// From a request's `credentials` object.
    pub fn from_credentials(
        object: &Map<String, Value>,
    ) -> Result<Settings, Vec<CredentialProblem>> {
        let mut problems = Vec::new();
        let read = |field: &'static str| match object.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(CredentialProblem {
                field,
                message: "must be text".into(),
            }),
        };
        let values: Vec<String> = FIELDS
            .iter()
            .map(|field| {
                read(field).unwrap_or_else(|problem| {
                    problems.push(problem);
                    String::new()
                })
            })
            .collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        Settings::from_list(&values, false)
    }

    /// From `APP_GIT_SYNC_<FIELD>` variables (the command line); a `…_FILE` variant reads
    /// the value from a file (secrets stay out of the process list; keys, certificates). A
    /// file that cannot be read is a problem of its own, named. With `sign_in=openapi_token`
    /// and no token, the command line signs in by the device flow (an empty token here).
    pub fn from_env() -> Result<Settings, Vec<CredentialProblem>> {
        let mut unreadable = Vec::new();
        let values: Vec<String> = FIELDS
            .iter()
            .map(|field| {
                let name = format!("APP_GIT_SYNC_{}", field.to_ascii_uppercase());
                if let Ok(value) = std::env::var(&name) {
                    return value;
                }
                let Some(file) = std::env::var_os(format!("{name}_FILE")) else {
                    return String::new();
                };
                std::fs::read_to_string(&file).unwrap_or_else(|e| {
                    unreadable.push(CredentialProblem {
                        field,
                        message: format!(
                            "{name}_FILE names {}, which cannot be read ({})",
                            std::path::Path::new(&file).display(),
                            e.kind()
                        ),
                    });
                    String::new()
                })
            })
            .collect();
        if !unreadable.is_empty() {
            return Err(unreadable);
        }
        Settings::from_list(&values, true)
    }

    /// From one value per field of [`FIELDS`], in its order; `device_flow` lets an OpenAPI
    /// sign-in come without a token.
    fn from_list(values: &[String], device_flow: bool) -> Result<Settings, Vec<CredentialProblem>> {
        Settings::from_values(
            |field| {
                let i = FIELDS
                    .iter()
                    .position(|f| *f == field)
                    .expect("a declared field");
                values[i].clone()
            },
            device_flow,
        )
    }

    fn from_values(
        value: impl Fn(&str) -> String,
        device_flow: bool,
    ) -> Result<Settings, Vec<CredentialProblem>> {
        let get = |field: &str| match TRIMMED.contains(&field) {
            true => value(field).trim().to_string(),
            false => value(field),
        };
        let problems = std::cell::RefCell::new(Vec::new());
        let problem = |field: &'static str, message: &str| {
            problems.borrow_mut().push(CredentialProblem {
                field,
                message: message.to_string(),
            })
        };
        let console_url = match normalize_console_url(&get("console_url")) {
            Ok(url) => url,
            Err(message) => {
                problem("console_url", &message);
                String::new()
            }
        };
        let required = |field: &'static str, why: &str| {
            let v = get(field);
            if v.is_empty() {
                problem(field, why);
            }
            v
        };
        let sign_in = match get("sign_in").as_str() {
            "admin_api_key" => SignIn::AdminKey {
                key: required("admin_api_key", "is required to sign in with the admin API key"),
                workspace_id: required(
                    "workspace_id",
                    "is required with the admin API key: the workspace whose apps are synced",
                ),
            },
            "" | "password" => SignIn::Password {
                email: required("email", "is required to sign in with e-mail and password"),
                password: required("password", "is required to sign in with e-mail and password"),
            },
            "openapi_token" => SignIn::OpenApi {
                token: match device_flow {
                    true => get("openapi_token"),
                    false => required(
                        "openapi_token",
                        "is required to sign in with Dify's OpenAPI: a dfoa_ token from its device \
                         flow (difyctl auth login; the command line runs the flow itself)",
                    ),
                },
                workspace_id: get("workspace_id"),
                // E-mail and password given too: the console API where the OpenAPI is off.
                fallback: match (get("email"), value("password")) {
                    (email, password) if !email.is_empty() && !password.is_empty() => {
                        Some(Box::new(SignIn::Password { email, password }))
                    }
                    _ => None,
                },
            },
            "session" => SignIn::Session {
                access_token: required(
                    "session_access_token",
                    "is required for a pasted session: the access_token cookie of a signed-in browser",
                ),
                refresh_token: get("session_refresh_token"),
                csrf_token: get("session_csrf_token"),
            },
            other => {
                let shown: String = other.chars().take(40).collect();
                problem(
                    "sign_in",
                    &format!(
                        "{shown:?} is not one of admin_api_key, password, session, openapi_token"
                    ),
                );
                SignIn::Password {
                    email: String::new(),
                    password: String::new(),
                }
            }
        };
        let repository_url = required(
            "repository_url",
            "is required: the HTTPS or SSH URL of the repository the apps are versioned in",
        );
        let branch = match get("branch") {
            b if b.is_empty() => "main".to_string(),
            b => b,
        };
        let directory = get("directory").trim_matches('/').to_string();
        if directory.split('/').any(|part| part == ".." || part == ".") {
            problem("directory", "must stay inside the repository (no . or ..)");
        }
        let environment = get("environment");
        if !environment.is_empty() {
            if let Err(message) = crate::environment::check_name(&environment) {
                problem("environment", &message);
            }
        }
        // A select field: its value among `choices` (empty: the first), else named as wrong.
        let choice = |field: &'static str, choices: &[&str]| {
            let value = get(field);
            match choices.iter().position(|c| *c == value) {
                Some(i) => i,
                None if value.is_empty() => 0,
                None => {
                    let shown: String = value.chars().take(40).collect();
                    problem(
                        field,
                        &format!("{shown:?} is not one of {}", choices.join(", ")),
                    );
                    0
                }
            }
        };
        let secrets_in_git = match choice("secrets_in_git", &["placeholder", "refuse"]) {
            1 => SecretsInGit::Refuse,
            _ => SecretsInGit::Placeholder,
        };
        let deletions = match choice(
            "deletions",
            &["keep", "remove_files", "remove_files_and_apps"],
        ) {
            1 => Deletions::RemoveFiles,
            2 => Deletions::RemoveFilesAndApps,
            _ => Deletions::Keep,
        };
        let git = GitCredentials {
            access_token: get("git_access_token").trim().to_string(),
            username: get("git_username"),
            ssh_private_key: get("ssh_private_key"),
            ssh_passphrase: get("ssh_passphrase"),
            ssh_known_hosts: get("ssh_known_hosts"),
            ca_certificate: get("ca_certificate"),
        };
        for mut found in git.problems() {
            found.field = match found.field {
                "access_token" => "git_access_token",
                "username" => "git_username",
                other => other,
            };
            problems.borrow_mut().push(found);
        }
        let problems = problems.into_inner();
        match problems.is_empty() {
            true => Ok(Settings {
                console_url,
                sign_in,
                repository_url,
                branch,
                directory,
                environment,
                secrets_in_git,
                deletions,
                git,
            }),
            false => Err(problems),
        }
    }

    /// Identifies the repository, branch, directory and environment in storage keys (no
    /// secret in it); without an environment, the key it always was.
    pub fn target_key(&self) -> String {
        use sha2::{Digest, Sha256};
        let masked = git_remote::url::mask_url(&self.repository_url);
        let mut target = format!("{masked}\n{}\n{}", self.branch, self.directory);
        if !self.environment.is_empty() {
            target.push_str(&format!("\nenvironment {}", self.environment));
        }
        let digest = Sha256::digest(target);
        hex::encode(&digest[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Result<Settings, Vec<CredentialProblem>> {
        Settings::from_credentials(value.as_object().unwrap())
    }

    #[test]
    fn each_sign_in_needs_its_fields() {
        let problems =
            settings(json!({"sign_in": "admin_api_key", "repository_url": "https://g/r.git"}))
                .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["admin_api_key", "workspace_id"]);
        let problems = settings(json!({"sign_in": "session", "repository_url": "https://g/r.git"}))
            .unwrap_err();
        assert_eq!(problems[0].field, "session_access_token");
        let ok = settings(
            json!({"email": "a@b.c", "password": " p ", "repository_url": " https://g/r.git "}),
        )
        .unwrap();
        assert_eq!(
            ok.sign_in,
            SignIn::Password {
                email: "a@b.c".into(),
                password: " p ".into()
            }
        );
        assert_eq!(
            (ok.branch.as_str(), ok.repository_url.as_str()),
            ("main", "https://g/r.git")
        );
        assert_eq!(ok.console_url, "http://api:5001");
    }

    #[test]
    fn refusals_never_echo_secrets() {
        let problems =
            settings(json!({"sign_in": "sk-very-secret-value", "password": 5})).unwrap_err();
        assert!(problems.iter().all(|p| p.field == "password"));
        let problems = settings(json!({"sign_in": "pw-secret-pasted-in-the-wrong-field-and-longer-than-forty", "repository_url": "x"})).unwrap_err();
        let text: String = problems.iter().map(ToString::to_string).collect();
        assert!(!text.contains("longer-than-forty"), "{text}");
    }

    #[test]
    fn the_directory_stays_inside_the_repository() {
        let problems = settings(
            json!({"email": "a", "password": "b", "repository_url": "r", "directory": "../x"}),
        )
        .unwrap_err();
        assert_eq!(problems[0].field, "directory");
    }
}
