//! The credentials a Dify authorization holds, read from a request and checked for format.
//! Secrets never appear in a message: problems name the field and the fix only.

use std::fmt;

use serde_json::{Map, Value};

/// What the provider's `credentials_schema` declares; empty strings mean "not given".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub access_token: String,
    pub username: String,
    pub ssh_private_key: String,
    pub ssh_passphrase: String,
    pub ssh_known_hosts: String,
    pub ca_certificate: String,
    /// The Knowledge API's base URL (empty: [`DEFAULT_DIFY_API_URL`]).
    pub dify_api_url: String,
    /// A Knowledge API key (`dataset-…`); mirroring is on when it and a knowledge base id are set.
    pub dify_api_key: String,
}

/// Dify's API as the plugin daemon's container reaches it in Dify's docker compose.
pub const DEFAULT_DIFY_API_URL: &str = "http://api:5001/v1";

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let given = |s: &str| if s.is_empty() { "empty" } else { "given" };
        f.debug_struct("Credentials")
            .field("access_token", &given(&self.access_token))
            .field("username", &self.username)
            .field("ssh_private_key", &given(&self.ssh_private_key))
            .field("ssh_passphrase", &given(&self.ssh_passphrase))
            .field("ssh_known_hosts", &given(&self.ssh_known_hosts))
            .field("ca_certificate", &given(&self.ca_certificate))
            .field("dify_api_url", &given(&self.dify_api_url))
            .field("dify_api_key", &given(&self.dify_api_key))
            .finish()
    }
}

/// One problem with one credential field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProblem {
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for CredentialProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
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
                    message: format!(
                        "must be text, not {}",
                        crate::protocol::wire::json_kind(other)
                    ),
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
            access_token: access_token.trim().to_string(),
            username: username.trim().to_string(),
            ssh_private_key,
            ssh_passphrase,
            ssh_known_hosts,
            ca_certificate,
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
        let mut problems = Vec::new();
        let mut problem = |field: &'static str, message: String| {
            problems.push(CredentialProblem { field, message })
        };
        if self.access_token.chars().any(char::is_whitespace) {
            problem(
                "access_token",
                "contains spaces or line breaks; paste only the token itself".into(),
            );
        }
        if self.username.chars().any(char::is_whitespace) {
            problem("username", "must be a single word without spaces".into());
        }
        if !self.ssh_private_key.trim().is_empty() {
            let key = normalize_private_key(&self.ssh_private_key);
            if let Err(message) = check_private_key(&key, &self.ssh_passphrase) {
                problem("ssh_private_key", message);
            }
        } else if !self.ssh_passphrase.is_empty() {
            problem(
                "ssh_passphrase",
                "is set but there is no ssh_private_key; add the key or clear the passphrase"
                    .into(),
            );
        }
        for (line_no, message) in known_hosts_problems(&self.ssh_known_hosts) {
            problem(
                "ssh_known_hosts",
                format!("line {line_no} is not a known_hosts entry ({message}); use the output of `ssh-keyscan HOST`"),
            );
        }
        if !self.ca_certificate.trim().is_empty() {
            if let Err(message) = check_certificates(&self.ca_certificate) {
                problem("ca_certificate", message);
            }
        }
        if let Err(message) = crate::mirror::api::normalize_base(self.api_url()) {
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

/// Repairs the usual ways a key gets mangled on its way through a web form: literal `\n`
/// sequences, CRLF line ends, and a key pasted as one line with spaces for line breaks.
pub fn normalize_private_key(raw: &str) -> String {
    let text = raw.trim().replace("\\r\\n", "\n").replace("\\n", "\n");
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let text = text.trim();
    let Some((begin, rest)) = split_armor_line(text, "-----BEGIN ") else {
        return format!("{text}\n");
    };
    let Some(end_at) = rest.find("-----END ") else {
        return format!("{text}\n");
    };
    let (body, end) = rest.split_at(end_at);
    let end = end.trim();
    // Headers such as `Proc-Type:` (legacy encrypted PEM) need their own lines; leave those
    // bodies as they are.
    if body.contains(':') {
        return format!("{begin}\n{}\n{end}\n", body.trim());
    }
    let base64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let width = if begin.contains("OPENSSH") { 70 } else { 64 };
    let lines: Vec<&str> = base64
        .as_bytes()
        .chunks(width)
        .map(|chunk| std::str::from_utf8(chunk).expect("base64 text is ASCII"))
        .collect();
    format!("{begin}\n{}\n{end}\n", lines.join("\n"))
}

/// Splits `-----BEGIN X-----` from what follows it, wherever the line breaks are.
fn split_armor_line<'a>(text: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let start = text.find(marker)?;
    let after = &text[start + marker.len()..];
    let close = after.find("-----")? + 5;
    let header_end = start + marker.len() + close;
    Some((&text[start..header_end], &text[header_end..]))
}

/// The most bcrypt rounds an encrypted OpenSSH key may ask for (`ssh-keygen -a`, default 16).
const MAX_KDF_ROUNDS: u32 = 1000;

/// An encrypted OpenSSH key names its own bcrypt rounds, and a hostile one could ask for
/// billions: refused before anything decrypts it (here and before every SSH connection).
pub fn check_kdf_rounds(key: &str) -> Result<(), String> {
    match ssh_key::PrivateKey::from_openssh(key) {
        Ok(parsed) => check_parsed_kdf_rounds(&parsed),
        Err(_) => Ok(()),
    }
}

fn check_parsed_kdf_rounds(parsed: &ssh_key::PrivateKey) -> Result<(), String> {
    match parsed.kdf() {
        ssh_key::Kdf::Bcrypt { rounds, .. } if *rounds > MAX_KDF_ROUNDS => Err(format!(
            "asks for {rounds} key-derivation rounds (at most {MAX_KDF_ROUNDS}); re-encrypt it with \
             `ssh-keygen -p -a 100 -f KEY`"
        )),
        _ => Ok(()),
    }
}

/// Parses a normalized private key; with a passphrase when it is encrypted.
fn check_private_key(key: &str, passphrase: &str) -> Result<(), String> {
    if key.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let parsed = ssh_key::PrivateKey::from_openssh(key).map_err(|_| {
            "is not a readable OpenSSH private key; paste the whole file including the BEGIN and END lines".to_string()
        })?;
        check_parsed_kdf_rounds(&parsed)?;
        if parsed.is_encrypted() {
            if passphrase.is_empty() {
                return Err("is protected by a passphrase; fill in ssh_passphrase".into());
            }
            parsed.decrypt(passphrase.as_bytes()).map_err(|_| {
                "cannot be opened with the given ssh_passphrase; check the passphrase".to_string()
            })?;
        }
        return Ok(());
    }
    if key.contains("PRIVATE KEY-----") {
        let encrypted = key.contains("ENCRYPTED");
        if encrypted && passphrase.is_empty() {
            return Err("is protected by a passphrase; fill in ssh_passphrase".into());
        }
        let parsed = if encrypted {
            openssl::pkey::PKey::private_key_from_pem_passphrase(
                key.as_bytes(),
                passphrase.as_bytes(),
            )
        } else {
            openssl::pkey::PKey::private_key_from_pem(key.as_bytes())
        };
        return parsed.map(drop).map_err(|_| {
            if encrypted {
                "cannot be opened with the given ssh_passphrase; check the passphrase".to_string()
            } else {
                "is not a readable PEM private key; paste the whole file including the BEGIN and END lines".to_string()
            }
        });
    }
    if key.contains("PUBLIC KEY") || key.starts_with("ssh-") || key.starts_with("ecdsa-") {
        return Err("holds a public key; paste the private key (the file without .pub)".into());
    }
    Err("is not a private key; paste the whole key file, from -----BEGIN to -----END".into())
}

/// `(line number, reason)` for every line that does not parse as a known_hosts entry.
fn known_hosts_problems(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            !line.is_empty() && !line.starts_with('#')
        })
        .filter_map(|(i, line)| {
            line.trim()
                .parse::<ssh_key::known_hosts::Entry>()
                .err()
                .map(|error| (i + 1, error.to_string()))
        })
        .collect()
}

fn check_certificates(pem: &str) -> Result<(), String> {
    let text = pem.replace("\\n", "\n");
    match openssl::x509::X509::stack_from_pem(text.as_bytes()) {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        _ => Err("is not a PEM certificate; paste the CA certificate from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY_BODY: &str = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZWQyNTUxOQAAACBbYXNkZmFzZGZhc2RmYXNkZmFzZGZhc2RmYXNkZmFzZGZhcw";

    fn armored(body: &str) -> String {
        let lines: Vec<String> = body
            .as_bytes()
            .chunks(70)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn pasted_forms_normalize_to_the_file() {
        let file = armored(KEY_BODY);
        let crlf = file.replace('\n', "\r\n");
        let escaped = file.replace('\n', "\\n");
        let one_line = file.replace('\n', " ");
        for form in [&file, &crlf, &escaped, &one_line] {
            assert_eq!(normalize_private_key(form), file, "{form:?}");
        }
    }

    proptest! {
        #[test]
        fn normalizing_is_idempotent(body in "[A-Za-z0-9+/]{1,400}", sep in prop::sample::select(vec![" ", "\n", "\r\n", "\\n"])) {
            let pasted = armored(&body).replace('\n', sep);
            let once = normalize_private_key(&pasted);
            prop_assert_eq!(normalize_private_key(&once), once.clone());
            prop_assert_eq!(once, armored(&body));
        }
    }

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
            access_token: "tok-secret".into(),
            dify_api_key: "dataset-secret".into(),
            dify_api_url: "https://user:pw-secret@dify.example.com/v1".into(),
            ..Credentials::default()
        };
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("tok-secret") && !shown.contains("dataset-secret"));
        assert!(!shown.contains("pw-secret"));
    }
}
