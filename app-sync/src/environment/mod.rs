//! Environments: one repository, several Difys. An environment is a Dify (the credentials of
//! the run) and a file in the repository, `.dify-sync/environments/<name>.yaml`, reviewed like
//! code, that says how the references of the app files map to that Dify: knowledge bases and
//! workflow tools by name, tool credentials by name, models, and the values of non-secret
//! environment variables. Its apps are mapped to the files in `<name>.index.json` beside it
//! (the shared `index.json` keeps the ids of the Dify that runs without an environment).
//!
//! The files hold references in a neutral form, written by an environment's export
//! ([`remap::to_git`]) and resolved by its import ([`remap::to_target`]).

pub mod catalog;
pub mod remap;

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::dsl;

/// Where the environment files live, under the sync directory.
pub const DIRECTORY: &str = ".dify-sync/environments";

/// The largest environment file read (it is written by hand).
const MAX_FILE: usize = 1 << 20;

/// One environment's file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    #[serde(skip)]
    pub name: String,
    /// Knowledge base name in the files → its name (or id) in this Dify.
    #[serde(default)]
    pub knowledge_bases: BTreeMap<String, String>,
    /// Workflow tool name in the files → its name in this Dify.
    #[serde(default)]
    pub workflow_tools: BTreeMap<String, String>,
    /// Tool provider (`langgenius/tavily/tavily`) → the name of the credential its tool
    /// nodes use in this Dify (Dify exports tool nodes without one).
    #[serde(default)]
    pub tool_credentials: BTreeMap<String, String>,
    /// Models of the files → models of this Dify.
    #[serde(default)]
    pub models: Vec<ModelMapping>,
    /// Non-secret environment variables → their value in this Dify.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, Value>,
    /// App file (`support-bot.yml`) → the id of an app this Dify already has, to adopt it
    /// instead of creating a copy on the first import.
    #[serde(default)]
    pub apps: BTreeMap<String, String>,
}

/// A model of the files and the model this Dify uses in its place.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMapping {
    pub git: Model,
    pub here: Model,
}

/// A model provider (`langgenius/openai/openai`) and a model name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub provider: String,
    pub name: String,
}

impl Environment {
    /// An environment's file, read. A problem names the file and what to fix.
    pub fn parse(name: &str, text: &str) -> Result<Environment, String> {
        let file = file_name(name);
        if text.len() > MAX_FILE {
            return Err(format!(
                "{file} is over 1 MiB; it maps references, keep it small"
            ));
        }
        let mut environment: Environment = match text.trim().is_empty() {
            true => Environment::default(),
            false => serde_yaml::from_str(text).map_err(|e| format!("{file}: {e}"))?,
        };
        environment.name = name.to_string();
        for (variable, value) in &environment.environment_variables {
            if !(value.is_string() || value.is_number() || value.is_boolean()) {
                return Err(format!(
                    "{file}: environment_variables.{variable} must be a text or a number"
                ));
            }
        }
        let empty = |map: &BTreeMap<String, String>| {
            map.iter()
                .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
                .map(|(k, _)| k.clone())
        };
        for (section, map) in [
            ("knowledge_bases", &environment.knowledge_bases),
            ("workflow_tools", &environment.workflow_tools),
            ("tool_credentials", &environment.tool_credentials),
            ("apps", &environment.apps),
        ] {
            if let Some(key) = empty(map) {
                return Err(format!("{file}: {section} maps {key:?} to nothing"));
            }
        }
        Ok(environment)
    }

    /// The value this environment gives a variable, as the DSL writes it (text).
    pub fn variable(&self, name: &str) -> Option<Value> {
        self.environment_variables.get(name).map(|v| match v {
            Value::String(_) => v.clone(),
            other => Value::String(other.to_string()),
        })
    }
}

/// Whether `name` may name an environment: letters, digits, `-` and `_`, 1 to 40.
pub fn check_name(name: &str) -> Result<(), String> {
    match !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        true => Ok(()),
        false => Err(
            "must be the name of a file under .dify-sync/environments/ (letters, digits, - and _)"
                .into(),
        ),
    }
}

fn file_name(name: &str) -> String {
    format!("{DIRECTORY}/{name}.yaml")
}

/// The environment's file, under the sync directory.
pub fn file_path(directory: &str, name: &str) -> String {
    dsl::join(directory, &file_name(name))
}

/// The index of the environment's apps, under the sync directory.
pub fn index_path(directory: &str, name: &str) -> String {
    dsl::join(directory, &format!("{DIRECTORY}/{name}.index.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reads_with_every_section() {
        let text = "knowledge_bases:\n  Docs: Docs (prod)\nworkflow_tools:\n  lookup: lookup_prod\ntool_credentials:\n  langgenius/tavily/tavily: Production\nmodels:\n  - git: {provider: langgenius/openai/openai, name: gpt-4o-mini}\n    here: {provider: langgenius/azure_openai/azure_openai, name: gpt-4o}\nenvironment_variables:\n  API_BASE: https://api.example.com\n  RETRIES: 3\napps:\n  bot.yml: 0b7c\n";
        let env = Environment::parse("production", text).unwrap();
        assert_eq!(env.knowledge_bases["Docs"], "Docs (prod)");
        assert_eq!(env.models[0].here.name, "gpt-4o");
        assert_eq!(env.variable("RETRIES"), Some(Value::String("3".into())));
        assert_eq!(env.name, "production");
        assert_eq!(Environment::parse("e", "").unwrap().name, "e");
    }

    #[test]
    fn a_bad_file_names_the_file_and_the_fix() {
        let error = Environment::parse("prod", "knowledge_base:\n  a: b\n").unwrap_err();
        assert!(
            error.contains(".dify-sync/environments/prod.yaml") && error.contains("knowledge_base"),
            "{error}"
        );
        let error = Environment::parse("prod", "environment_variables:\n  A: [1]\n").unwrap_err();
        assert!(error.contains("environment_variables.A"), "{error}");
        let error = Environment::parse("prod", "knowledge_bases:\n  a: ''\n").unwrap_err();
        assert!(error.contains("knowledge_bases"), "{error}");
        assert!(check_name("../x").is_err() && check_name("").is_err());
        // Aliases that would expand a small file into a huge one are refused, not expanded.
        let mut bomb =
            String::from("environment_variables:\n  a: &a [x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in "bcdefghij".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            bomb.push_str(&format!("  {name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let started = std::time::Instant::now();
        assert!(Environment::parse("prod", &bomb).is_err());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert!(check_name("prod-eu_1").is_ok());
    }
}
