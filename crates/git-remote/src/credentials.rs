//! The credentials of a Git remote (HTTPS token, SSH key, known hosts, CA), checked for
//! format. Secrets never appear in a message: problems name the field and the fix only.

use std::fmt;

/// Empty strings mean "not given".
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GitCredentials {
    pub access_token: String,
    pub username: String,
    pub ssh_private_key: String,
    pub ssh_passphrase: String,
    pub ssh_known_hosts: String,
    pub ca_certificate: String,
}

impl fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitCredentials")
            .field("access_token", &given(&self.access_token))
            .field("username", &self.username)
            .field("ssh_private_key", &given(&self.ssh_private_key))
            .field("ssh_passphrase", &given(&self.ssh_passphrase))
            .field("ssh_known_hosts", &given(&self.ssh_known_hosts))
            .field("ca_certificate", &given(&self.ca_certificate))
            .finish()
    }
}

/// How a secret shows in debug output.
pub fn given(secret: &str) -> &'static str {
    if secret.is_empty() {
        "empty"
    } else {
        "given"
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

impl GitCredentials {
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
}
