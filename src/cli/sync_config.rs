//! The file `sync --config` reads: entries, each a repository's branch (its filters, the
//! names of the environment variables holding its credentials) mirrored into a knowledge base
//! as one `sync` does, and `defaults` every entry takes unless it says otherwise. A problem
//! names its line, and no value of the file is ever echoed: the file usually sits in a
//! repository, and a secret pasted where a variable's name belongs must not reach a CI log.
//! Editors validate it with `sync-config.schema.json`.

use std::path::{Path, PathBuf};

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::{git_credentials, read_secret_file, DifyArgs};
use crate::crawl::CrawlError;
use crate::dify::knowledge::KnowledgeApi;
use crate::repository::credentials::Credentials;
use crate::repository::params::{parse_knowledge_base_id, CrawlParams};
use crate::settings::Settings;
use git_remote::url::RepoUrl;
use git_remote::GitCredentials;

/// The largest file read: thousands of entries fit many times over.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The entries of a checked file, in its order.
#[derive(Debug)]
pub struct SyncConfig {
    pub entries: Vec<Entry>,
}

/// One repository's branch mirrored into one knowledge base.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique in the file: what `--only` and the summary name it by.
    pub name: String,
    /// The repository, branch, filters and knowledge base (incremental).
    pub params: CrawlParams,
    pub dataset: String,
    pub dify: DifySection,
    /// None: the GIT_DATASOURCE_* variables, as for one `sync`.
    pub credentials: Option<CredentialNames>,
    pub inputs: Value,
    pub start_node: Option<String>,
    pub max_delete: Option<usize>,
    pub allow_mass_delete: Option<bool>,
}

/// Where the Knowledge API is and which variable holds its key (else the command's own
/// `--dify-api-url` and key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DifySection {
    pub api_url: Option<String>,
    pub api_key_env: Option<String>,
}

/// The environment variables that hold a repository's secrets (each may instead be given as a
/// file in `<NAME>_FILE`), and the files that hold what is not secret.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialNames {
    pub token_env: Option<String>,
    pub username: Option<String>,
    pub ssh_key_env: Option<String>,
    pub ssh_key_file: Option<PathBuf>,
    pub ssh_passphrase_env: Option<String>,
    pub known_hosts_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    defaults: Defaults,
    syncs: Vec<Checked<Entry>>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    dify: Option<Checked<DifySection>>,
    credentials: Option<Checked<CredentialNames>>,
    max_delete: Option<usize>,
    allow_mass_delete: Option<bool>,
}

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
struct Checked<T>(T);

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

impl SyncConfig {
    /// Reads and checks the file: every problem names the file and a line.
    pub fn read(path: &Path) -> Result<SyncConfig, String> {
        let shown = path.display();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{shown} cannot be read ({})", e.kind()))?
            .len();
        if size > MAX_FILE_BYTES {
            return Err(format!(
                "{shown} is {size} bytes; a sync configuration of more than {MAX_FILE_BYTES} bytes \
                 is not read"
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{shown} cannot be read ({})", e.kind()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        SyncConfig::parse(&text, base).map_err(|problem| format!("{shown}: {problem}"))
    }

    /// Checks the text of a file; relative local paths are relative to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<SyncConfig, String> {
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| shown_error(&e))?;
        if raw.syncs.is_empty() {
            return Err("syncs lists no entry: add one (repository, knowledge_base)".into());
        }
        let defaults = raw.defaults;
        let mut entries: Vec<Entry> = Vec::new();
        for (index, Checked(mut entry)) in raw.syncs.into_iter().enumerate() {
            if let Some(first) = entries.iter().position(|e| e.name == entry.name) {
                return Err(format!(
                    "syncs[{index}] and syncs[{first}] are both named {:?}: give each entry its \
                     own name",
                    entry.name
                ));
            }
            let dify = defaults.dify.as_ref().map(|d| &d.0);
            entry.dify.api_url = entry.dify.api_url.or(dify.and_then(|d| d.api_url.clone()));
            entry.dify.api_key_env = entry
                .dify
                .api_key_env
                .or(dify.and_then(|d| d.api_key_env.clone()));
            entry.credentials = entry
                .credentials
                .or(defaults.credentials.as_ref().map(|c| c.0.clone()))
                .map(|names| names.relative_to(base));
            entry.max_delete = entry.max_delete.or(defaults.max_delete);
            entry.allow_mass_delete = entry.allow_mass_delete.or(defaults.allow_mass_delete);
            if entry.params.repo_url.starts_with('.') {
                entry.params.repo_url = base.join(&entry.params.repo_url).display().to_string();
            }
            entries.push(entry);
        }
        Ok(SyncConfig { entries })
    }

    /// The entries `--only` names (all without it); an unknown name lists the known ones.
    pub fn select(&self, only: &[String]) -> Result<Vec<&Entry>, String> {
        if only.is_empty() {
            return Ok(self.entries.iter().collect());
        }
        let unknown: Vec<&String> = only
            .iter()
            .filter(|name| !self.entries.iter().any(|e| &e.name == *name))
            .collect();
        if !unknown.is_empty() {
            let known: Vec<&str> = self.entries.iter().map(|e| e.name.as_str()).collect();
            return Err(format!(
                "--only names no entry of the file: {unknown:?}; its entries are {known:?}"
            ));
        }
        Ok(self
            .entries
            .iter()
            .filter(|e| only.contains(&e.name))
            .collect())
    }
}

impl CredentialNames {
    fn relative_to(self, base: &Path) -> CredentialNames {
        let join = |path: Option<PathBuf>| path.map(|p| base.join(p));
        CredentialNames {
            ssh_key_file: join(self.ssh_key_file),
            known_hosts_file: join(self.known_hosts_file),
            ca_file: join(self.ca_file),
            ..self
        }
    }

    /// The credentials, read from the variables and files named.
    fn read(&self) -> Result<Credentials, CrawlError> {
        let secret = |key: &str, name: &Option<String>| match name {
            Some(name) => named_secret(name, key),
            None => Ok(String::new()),
        };
        let file = |key: &str, path: &Option<PathBuf>| match path {
            Some(path) => read_secret_file(path, key),
            None => Ok(String::new()),
        };
        let ssh_private_key = match &self.ssh_key_file {
            Some(path) => read_secret_file(path, "credentials.ssh_key_file")?,
            None => secret("credentials.ssh_key_env", &self.ssh_key_env)?,
        };
        Ok(Credentials {
            git: GitCredentials {
                access_token: secret("credentials.token_env", &self.token_env)?,
                username: self.username.clone().unwrap_or_default(),
                ssh_private_key,
                ssh_passphrase: secret("credentials.ssh_passphrase_env", &self.ssh_passphrase_env)?,
                ssh_known_hosts: file("credentials.known_hosts_file", &self.known_hosts_file)?,
                ca_certificate: file("credentials.ca_file", &self.ca_file)?,
            },
            ..Credentials::default()
        })
    }
}

/// The secret in the variable `name`, or in the file `<name>_FILE` names; an error when
/// neither is set (the entry cannot run as written).
fn named_secret(name: &str, key: &str) -> Result<String, CrawlError> {
    if let Some(file) = std::env::var_os(format!("{name}_FILE")) {
        return read_secret_file(Path::new(&file), &format!("{name}_FILE ({key})"));
    }
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(CrawlError::Params(vec![format!(
            "the environment variable {name} ({key}) is not set, nor {name}_FILE: set it to the \
             secret, or change the name in the file"
        )])),
    }
}

impl Entry {
    /// The Knowledge API this entry reaches: its own or the defaults' `dify`, else the
    /// command's.
    pub fn api(&self, command: &DifyArgs, settings: &Settings) -> Result<KnowledgeApi, CrawlError> {
        let Some(name) = &self.dify.api_key_env else {
            let url = self.dify.api_url.clone();
            let command = DifyArgs {
                dify_api_url: url.unwrap_or_else(|| command.dify_api_url.clone()),
                dify_api_key: command.dify_api_key.clone(),
                dify_api_key_file: command.dify_api_key_file.clone(),
            };
            return command.api("sync", settings);
        };
        let key = named_secret(name, "dify.api_key_env")?;
        let url = self.dify.api_url.as_ref().unwrap_or(&command.dify_api_url);
        KnowledgeApi::new(url, &key)
            .map(|api| api.with_first_backoff(settings.dify_retry))
            .map_err(|problem| CrawlError::Params(vec![problem]))
    }

    /// The Git credentials: those the entry (or the defaults) names, else GIT_DATASOURCE_*.
    pub fn credentials(&self) -> Result<Credentials, CrawlError> {
        match &self.credentials {
            Some(names) => names.read(),
            None => git_credentials(),
        }
    }
}

/// serde_yaml's message with every quoted value hidden, unless it is one of the file's keys
/// or shaped like one (a mistyped key is worth showing; a token pasted as a key is not).
fn shown_error(error: &serde_yaml::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SyncConfig, String> {
        SyncConfig::parse(text, Path::new("/configs"))
    }

    const KB: &str = "3b7a52c1-5f1e-4c1a-9d7e-2f4e8c1d0a11";

    #[test]
    fn entries_take_the_defaults_unless_they_say_otherwise() {
        let text = format!(
            "defaults:\n  dify:\n    api_url: https://dify.example/v1\n    api_key_env: KB_KEY\n  \
             credentials:\n    token_env: GIT_TOKEN\n    ca_file: ca.pem\n  max_delete: 40\n\
             syncs:\n  - repository: https://git.example/org/docs.git\n    knowledge_base: {KB}\n    \
             extensions: [md, txt]\n  - name: api\n    repository: https://git.example/org/api.git\n    \
             branch: v2\n    knowledge_base: https://dify.example/datasets/{KB}/documents\n    \
             max_delete: 5\n    credentials:\n      token_env: API_TOKEN\n    inputs:\n      \
             chunk_size: 512\n"
        );
        let config = parse(&text).unwrap();
        let [docs, api] = &config.entries[..] else {
            panic!("two entries")
        };
        assert_eq!(docs.name, "docs");
        assert_eq!(docs.params.extensions, "md,txt");
        assert_eq!(docs.params.branch, "main");
        assert_eq!(docs.dify.api_key_env.as_deref(), Some("KB_KEY"));
        assert_eq!(docs.max_delete, Some(40));
        let names = docs.credentials.as_ref().unwrap();
        assert_eq!(names.token_env.as_deref(), Some("GIT_TOKEN"));
        assert_eq!(names.ca_file.as_deref(), Some(Path::new("/configs/ca.pem")));
        assert_eq!(api.name, "api");
        assert_eq!(api.dataset, KB);
        assert_eq!(api.params.branch, "v2");
        assert_eq!(api.max_delete, Some(5));
        assert_eq!(api.dify.api_url.as_deref(), Some("https://dify.example/v1"));
        let names = api.credentials.as_ref().unwrap();
        assert_eq!(names.token_env.as_deref(), Some("API_TOKEN"));
        assert_eq!(
            names.ca_file, None,
            "an entry's credentials replace the defaults'"
        );
        assert_eq!(api.inputs["chunk_size"], 512);
        assert_eq!(
            config
                .select(&["api".into()])
                .unwrap()
                .iter()
                .map(|e| &e.name)
                .collect::<Vec<_>>(),
            ["api"]
        );
        let error = config.select(&["nope".into()]).unwrap_err();
        assert!(error.contains("\"docs\", \"api\""), "{error}");
    }

    #[test]
    fn a_bad_entry_is_named_by_its_line() {
        let good = format!("  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n");
        // A problem of the entry as a whole names the line it starts on; one of a key, the
        // key's line.
        let cases = [
            ("    branch: 'a b'\n", "branch", "line 4"),
            ("    include: '[z'\n", "unclosed character class", "line 4"),
            ("    brunch: main\n", "unknown field `brunch`", "line 7"),
            ("    max_delete: lots\n", "expected usize", "line 7"),
        ];
        for (line, expected, at) in cases {
            let text = format!(
                "syncs:\n{good}  - name: second\n    repository: https://git.example/b.git\n    \
                 knowledge_base: {KB}\n{line}"
            );
            let error = parse(&text).unwrap_err();
            assert!(error.contains(at), "{at}: {error}");
            assert!(error.contains("syncs[1]"), "{error}");
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let missing = format!("syncs:\n{good}  - repository: https://git.example/b.git\n");
        let error = parse(&missing).unwrap_err();
        assert!(
            error.contains("missing field `knowledge_base`") && error.contains("line 4"),
            "{error}"
        );
        let twice = format!("syncs:\n{good}{good}");
        let error = parse(&twice).unwrap_err();
        assert!(error.contains("both named \"a\""), "{error}");
        assert!(parse("syncs: []\n").unwrap_err().contains("no entry"));
    }

    /// The keys serde takes in a mapping, read from its answer to an unknown one.
    fn accepted(text_with_zzz: &str) -> Vec<String> {
        let error = parse(text_with_zzz).unwrap_err();
        let expected = &error[error.find("expected ").expect(&error)..];
        let mut keys: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn the_schema_has_the_keys_the_reader_takes() {
        let schema: Value =
            serde_json::from_str(include_str!("../../sync-config.schema.json")).unwrap();
        let keys = |object: &Value| {
            let mut keys: Vec<String> = object["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        let entry =
            format!("  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n");
        let cases = [
            (&schema, format!("zzz: 1\nsyncs:\n{entry}")),
            (
                &schema["properties"]["defaults"],
                format!("defaults:\n  zzz: 1\nsyncs:\n{entry}"),
            ),
            (
                &schema["$defs"]["entry"],
                format!("syncs:\n{entry}    zzz: 1\n"),
            ),
            (
                &schema["$defs"]["dify"],
                format!("syncs:\n{entry}    dify:\n      zzz: 1\n"),
            ),
            (
                &schema["$defs"]["credentials"],
                format!("syncs:\n{entry}    credentials:\n      zzz: 1\n"),
            ),
        ];
        for (object, text) in cases {
            assert_eq!(keys(object), accepted(&text), "{text}");
        }
        assert_eq!(
            schema["$defs"]["entry"]["required"],
            serde_json::json!(["repository", "knowledge_base"])
        );
    }

    #[test]
    fn the_readme_example_is_a_valid_file() {
        let readme = include_str!("../../README.md");
        let start = readme.find("```yaml\n# sync.yaml\n").expect("the example") + "```yaml\n".len();
        let example = &readme[start..start + readme[start..].find("```").unwrap()];
        let config = parse(example).unwrap();
        let names: Vec<&str> = config.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["docs", "handbook"]);
        let handbook = &config.entries[1];
        assert_eq!(
            handbook.dify.api_key_env.as_deref(),
            Some("DIFY_DATASET_API_KEY")
        );
        assert_eq!(handbook.max_delete, Some(50));
        assert_eq!(handbook.inputs["max_chunk"], 1024);
    }

    #[test]
    fn no_value_of_the_file_is_echoed() {
        let secret = "ghp_Secret0123456789abcdefABCDEF012345";
        let cases = [
            format!("syncs:\n  - repository: https://x:{secret}@git.example/a.git\n    knowledge_base: {KB}\n"),
            format!("syncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n    credentials:\n      token_env: {secret}-\n"),
            format!("syncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n    credentials: {secret}\n"),
            format!("syncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n    {secret}: 1\n"),
            format!("syncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {secret}\n"),
            format!("syncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n    max_delete: {secret}\n"),
            format!("defaults:\n  dify:\n    api_key_env: dataset-{secret}\nsyncs:\n  - repository: https://git.example/a.git\n    knowledge_base: {KB}\n"),
        ];
        for text in cases {
            let error = parse(&text).unwrap_err();
            assert!(!error.contains("Secret0123"), "{error}");
            assert!(error.contains("line "), "{error}");
        }
    }
}
