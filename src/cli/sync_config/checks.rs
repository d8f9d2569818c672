//! Checking the file as it is read: each entry, `dify` and `credentials` mapping is checked
//! while serde_yaml reads it, so a problem carries the line where it starts; and serde's own
//! messages shown without the values they quote.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{CredentialNames, DifySection, Entry};
use crate::repository::params::{parse_knowledge_base_id, CrawlParams};
use git_remote::url::RepoUrl;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: Option<String>,
    repository: String,
    branch: Option<String>,
    subdir: Option<String>,
    extensions: Option<Patterns>,
    include: Option<Patterns>,
    exclude: Option<Patterns>,
    knowledge_base: String,
    dify: Option<Checked<DifySection>>,
    credentials: Option<Checked<CredentialNames>>,
    #[serde(default)]
    inputs: serde_json::Map<String, Value>,
    start_node: Option<String>,
    max_delete: Option<usize>,
    allow_mass_delete: Option<bool>,
}

/// Comma-separated text, or a list.
#[derive(Deserialize)]
#[serde(untagged)]
enum Patterns {
    Text(String),
    List(Vec<String>),
}

impl Patterns {
    fn joined(self) -> String {
        match self {
            Patterns::Text(text) => text,
            Patterns::List(list) => list.join(","),
        }
    }
}

/// A value checked as it is read, so that a problem carries the line where its mapping starts
/// (serde_yaml marks an error raised inside a mapping with the mapping's position).
pub(super) struct Checked<T>(pub(super) T);

trait Check: Sized {
    type Raw: DeserializeOwned;
    fn check(raw: Self::Raw) -> Result<Self, String>;
}

impl<'de, T: Check> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Checking<T>(std::marker::PhantomData<T>);
        impl<'de, T: Check> Visitor<'de> for Checking<T> {
            type Value = Checked<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of keys to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Checked<T>, A::Error> {
                let raw = T::Raw::deserialize(de::value::MapAccessDeserializer::new(map))?;
                T::check(raw).map(Checked).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_map(Checking(std::marker::PhantomData))
    }
}

impl Check for Entry {
    type Raw = RawEntry;

    fn check(raw: RawEntry) -> Result<Entry, String> {
        let mut problems = Vec::new();
        let repository = raw.repository.trim();
        let local = repository.starts_with(['/', '.', '~']);
        if !local {
            match RepoUrl::parse(repository) {
                Ok(url) if url.embedded_credentials().is_some() => problems.push(
                    "repository: the URL carries a user name and token; this file is usually \
                     committed, so put the token in an environment variable and name it as \
                     credentials.token_env"
                        .to_string(),
                ),
                Ok(_) => {}
                Err(error) => problems.push(format!("repository: {error}")),
            }
        }
        let dataset = parse_knowledge_base_id(&raw.knowledge_base)
            .map_err(|problem| {
                problems.push(problem.replacen("knowledge_base_id", "knowledge_base", 1))
            })
            .ok();
        let params = CrawlParams::from_json(Some(&serde_json::json!({
            "repo_url": repository,
            "branch": raw.branch.unwrap_or_default(),
            "subdir": raw.subdir.unwrap_or_default(),
            "extensions": raw.extensions.map(Patterns::joined).unwrap_or_default(),
            "include": raw.include.map(Patterns::joined).unwrap_or_default(),
            "exclude": raw.exclude.map(Patterns::joined).unwrap_or_default(),
            "knowledge_base_id": dataset.clone().unwrap_or_default(),
        })))
        .map_err(|found| problems.extend(found))
        .ok();
        let name = match raw.name {
            Some(name) => name.trim().to_string(),
            None => default_name(repository),
        };
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            problems.push(
                "name must be 1 to 64 printable characters (it names the entry in the summary \
                 and in --only)"
                    .into(),
            );
        }
        match (params, dataset, problems.is_empty()) {
            (Some(params), Some(dataset), true) => Ok(Entry {
                name,
                params,
                dataset,
                dify: raw.dify.map(|d| d.0).unwrap_or_default(),
                credentials: raw.credentials.map(|c| c.0),
                inputs: Value::Object(raw.inputs),
                start_node: raw.start_node,
                max_delete: raw.max_delete,
                allow_mass_delete: raw.allow_mass_delete,
            }),
            _ => Err(problems.join("; ")),
        }
    }
}

impl Check for DifySection {
    type Raw = DifySection;

    fn check(raw: DifySection) -> Result<DifySection, String> {
        check_variable("api_key_env", raw.api_key_env.as_deref())?;
        Ok(raw)
    }
}

impl Check for CredentialNames {
    type Raw = CredentialNames;

    fn check(raw: CredentialNames) -> Result<CredentialNames, String> {
        check_variable("token_env", raw.token_env.as_deref())?;
        check_variable("ssh_key_env", raw.ssh_key_env.as_deref())?;
        check_variable("ssh_passphrase_env", raw.ssh_passphrase_env.as_deref())?;
        if raw.ssh_key_env.is_some() && raw.ssh_key_file.is_some() {
            return Err("give ssh_key_env or ssh_key_file, not both (one key is used)".into());
        }
        Ok(raw)
    }
}

/// A variable's name, never its value: a secret pasted there is refused without being shown.
fn check_variable(key: &str, name: Option<&str>) -> Result<(), String> {
    let Some(name) = name else { return Ok(()) };
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match valid {
        true => Ok(()),
        false => Err(format!(
            "{key} must be the name of an environment variable (letters, digits and _, such as \
             DOCS_TOKEN), not the secret itself: put the secret in that variable; the value given \
             ({} characters) is not shown",
            name.chars().count()
        )),
    }
}

/// `org/docs.git` → `docs`.
fn default_name(repository: &str) -> String {
    let last = repository
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default();
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

/// serde_yaml's message with every quoted value hidden, unless it is one of the file's keys
/// or shaped like one (a mistyped key is worth showing; a token pasted as a key is not).
pub(super) fn shown_error(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(open) = rest.find(['`', '"']) {
        let quote = rest[open..].chars().next().expect("found");
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find(quote) else {
            rest = after;
            break;
        };
        let quoted = &after[..close];
        let key_like = quoted.len() <= 32
            && !quoted.is_empty()
            && quoted.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        out.push_str(if key_like { quoted } else { "…" });
        out.push(quote);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}
