//! The file `sync --config` reads: entries, each a repository's branch (its filters, the
//! names of the environment variables holding its credentials) mirrored into a knowledge base
//! as one `sync` does, and `defaults` every entry takes unless it says otherwise. A problem
//! names its line, and no value of the file is ever echoed: the file usually sits in a
//! repository, and a secret pasted where a variable's name belongs must not reach a CI log.
//! Editors validate it with `sync-config.schema.json`.

mod checks;
mod secrets;

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::repository::params::CrawlParams;
use checks::{shown_error, Checked};

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
            serde_json::from_str(include_str!("../../../sync-config.schema.json")).unwrap();
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
        let readme = include_str!("../../../README.md");
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
