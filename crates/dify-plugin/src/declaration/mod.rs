//! The plugin's own files (`manifest.yaml`, the provider YAML with its datasource or tool YAML,
//! a tool plugin's endpoint group with its endpoint YAML, `_assets/`): loaded once, validated as strictly as the daemon's remote-debug path, and turned
//! into the JSON declarations the TCP registration sends.

mod rules;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub const MANIFEST_FILE: &str = "manifest.yaml";
pub const ASSETS_DIR: &str = "_assets";

/// One thing wrong with the plugin's files, named by file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// Every problem found, all at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "the plugin declaration has {} problem(s) the daemon would refuse:",
            self.0.len()
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The kinds of plugin this runtime serves: one provider of one kind per plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    Datasource,
    Tool,
}

impl PluginKind {
    /// The manifest's `plugins.<key>` list and the provider's list of its declarations.
    pub fn key(self) -> &'static str {
        match self {
            PluginKind::Datasource => "datasources",
            PluginKind::Tool => "tools",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            PluginKind::Datasource => "datasource",
            PluginKind::Tool => "tool",
        }
    }

    /// The TCP registration frame that carries the provider.
    pub fn declaration_frame(self) -> &'static str {
        match self {
            PluginKind::Datasource => "datasource_declaration",
            PluginKind::Tool => "tool_declaration",
        }
    }
}

/// The validated declaration of the plugin.
#[derive(Debug, Clone)]
pub struct PluginDeclaration {
    kind: PluginKind,
    manifest: Value,
    provider: Value,
    /// A tool plugin's endpoint group, its endpoints inlined.
    endpoints: Option<Value>,
    assets: Vec<(String, Vec<u8>)>,
    /// The declaration files, relative to the plugin directory.
    files: Vec<String>,
}

impl PluginDeclaration {
    /// Loads and validates the plugin files under `dir`.
    pub fn load(dir: &Path) -> Result<Self, Problems> {
        let mut problems = Vec::new();
        let manifest = read_yaml(dir, MANIFEST_FILE, &mut problems);
        let Some(manifest) = manifest else {
            return Err(Problems(problems));
        };
        let kind = rules::check_manifest(&manifest, &mut problems);
        let provider_file = kind.and_then(|kind| rules::provider_path(&manifest, kind));
        let mut member_files = Vec::new();
        let mut provider = provider_file
            .as_deref()
            .and_then(|file| read_yaml(dir, file, &mut problems).map(|v| (file.to_string(), v)));
        if let (Some(kind), Some((file, provider))) = (kind, provider.as_mut()) {
            rules::check_provider(kind, file, provider, &mut problems);
            let members = inline_members(kind, dir, file, provider, &mut problems);
            for (file, member) in &members {
                match kind {
                    PluginKind::Datasource => rules::check_datasource(file, member, &mut problems),
                    PluginKind::Tool => rules::check_tool(file, member, &mut problems),
                }
            }
            member_files.extend(inline_in_place(provider, kind.key(), members));
        }
        let group_file =
            kind.and_then(|kind| rules::endpoint_group_path(&manifest, kind, &mut problems));
        let mut endpoints = group_file
            .as_deref()
            .and_then(|file| read_yaml(dir, file, &mut problems));
        if let (Some(file), Some(group)) = (group_file.as_deref(), endpoints.as_mut()) {
            rules::check_endpoint_group(file, group, &mut problems);
            let inlined = inline_list(dir, file, group, "endpoints", "endpoint", &mut problems);
            for (member, endpoint) in &inlined {
                rules::check_endpoint(member, endpoint, &mut problems);
            }
            member_files.push(file.to_string());
            member_files.extend(inline_in_place(group, "endpoints", inlined));
        }
        let assets = read_assets(dir, &mut problems);
        let icons = rules::icon_references(&manifest, kind, provider.as_ref().map(|(_, p)| p));
        for (file, field, icon) in icons {
            let present = assets.iter().any(|(name, _)| *name == icon);
            if !present {
                problems.push(Problem {
                    file,
                    field,
                    message: format!("icon {icon:?} is not a file in {ASSETS_DIR}/"),
                });
            }
        }
        let mut files = vec![MANIFEST_FILE.to_string()];
        files.extend(provider_file);
        files.extend(member_files);
        match (problems.is_empty(), kind, provider) {
            (true, Some(kind), Some((_, provider))) => Ok(PluginDeclaration {
                kind,
                manifest,
                provider,
                endpoints,
                assets,
                files,
            }),
            _ => Err(Problems(problems)),
        }
    }

    /// The manifest as the `manifest_declaration` frame carries it.
    pub fn manifest_json(&self) -> &Value {
        &self.manifest
    }

    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// The provider with its datasources or tools inlined, as the registration frame
    /// ([`PluginKind::declaration_frame`]) carries it.
    pub fn provider_json(&self) -> &Value {
        &self.provider
    }

    /// The endpoint group with its endpoints, as the `endpoint_declaration` frame carries it.
    pub fn endpoints_json(&self) -> Option<&Value> {
        self.endpoints.as_ref()
    }

    /// Every top-level file of `_assets/` by name, as the SDK sends them.
    pub fn assets(&self) -> &[(String, Vec<u8>)] {
        &self.assets
    }

    pub fn author(&self) -> &str {
        self.manifest["author"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.manifest["name"].as_str().unwrap_or_default()
    }

    /// The plugin's binary, `bin/<binary_name>-<arch>` in the package: its name with dashes.
    pub fn binary_name(&self) -> String {
        self.name().replace('_', "-")
    }

    pub fn version(&self) -> &str {
        self.manifest["version"].as_str().unwrap_or_default()
    }

    /// The declaration files (manifest, provider, datasources or tools), relative to the
    /// plugin dir.
    pub fn declaration_files(&self) -> &[String] {
        &self.files
    }

    /// Every icon the declarations reference, by name under `_assets/`.
    pub fn icon_files(&self) -> Vec<String> {
        let icons = rules::icon_references(&self.manifest, Some(self.kind), Some(&self.provider));
        let mut names: Vec<String> = icons.into_iter().map(|(_, _, icon)| icon).collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Where the plugin files are: the working directory (the daemon runs us in the unpacked
/// package), else next to the binary (`bin/..`).
pub fn find_plugin_dir() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    if cwd.join(MANIFEST_FILE).is_file() {
        return cwd;
    }
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf));
    match beside_binary {
        Some(dir) if dir.join(MANIFEST_FILE).is_file() => dir,
        _ => cwd,
    }
}

fn read_yaml(dir: &Path, file: &str, problems: &mut Vec<Problem>) -> Option<Value> {
    let mut problem = |message: String| {
        problems.push(Problem {
            file: file.to_string(),
            field: String::new(),
            message,
        })
    };
    if file.split('/').any(|part| part == "..") || Path::new(file).is_absolute() {
        problem("the path must stay inside the plugin directory".into());
        return None;
    }
    let text = match std::fs::read_to_string(dir.join(file)) {
        Ok(text) => text,
        Err(error) => {
            problem(format!("cannot read it: {error}"));
            return None;
        }
    };
    let yaml: serde_yaml::Value = match serde_yaml::from_str(&text) {
        Ok(yaml) => yaml,
        Err(error) => {
            problem(format!("not valid YAML: {error}"));
            return None;
        }
    };
    match serde_json::to_value(yaml) {
        Ok(value @ Value::Object(_)) => Some(value),
        Ok(_) => {
            problem("the file must hold a mapping".into());
            None
        }
        Err(error) => {
            problem(format!("cannot be read as JSON-compatible data: {error}"));
            None
        }
    }
}

/// Replaces the provider's datasource or tool paths by the documents they name.
fn inline_members(
    kind: PluginKind,
    dir: &Path,
    provider_file: &str,
    provider: &Value,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Value)> {
    inline_list(
        dir,
        provider_file,
        provider,
        kind.key(),
        kind.noun(),
        problems,
    )
}

/// Puts the documents `inlined` in place of the list `key` of `declaration`; the paths the
/// list named.
fn inline_in_place(
    declaration: &mut Value,
    key: &str,
    inlined: Vec<(String, Value)>,
) -> Vec<String> {
    let paths = declaration[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if let Some(object) = declaration.as_object_mut() {
        let documents = inlined.into_iter().map(|(_, d)| d).collect();
        object.insert(key.into(), Value::Array(documents));
    }
    paths
}

/// The documents a declaration's list `key` names by path (or holds inline).
fn inline_list(
    dir: &Path,
    file: &str,
    declaration: &Value,
    key: &str,
    noun: &str,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Value)> {
    let Some(entries) = declaration.get(key).and_then(Value::as_array) else {
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .filter_map(|(i, entry)| match entry {
            Value::String(path) => read_yaml(dir, path, problems).map(|v| (path.clone(), v)),
            Value::Object(_) => Some((format!("{file} {key}[{i}]"), entry.clone())),
            _ => {
                problems.push(Problem {
                    file: file.to_string(),
                    field: format!("{key}[{i}]"),
                    message: format!("must be the path of a {noun} YAML file"),
                });
                None
            }
        })
        .collect()
}

fn read_assets(dir: &Path, problems: &mut Vec<Problem>) -> Vec<(String, Vec<u8>)> {
    let entries = match std::fs::read_dir(dir.join(ASSETS_DIR)) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(Problem {
                file: format!("{ASSETS_DIR}/"),
                field: String::new(),
                message: format!("cannot read the icon directory: {error}"),
            });
            return Vec::new();
        }
    };
    let mut assets: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        // A link to an icon another package of the same binary keeps counts as the icon.
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let bytes = std::fs::read(entry.path()).ok()?;
            Some((name, bytes))
        })
        .collect();
    assets.sort();
    assets
}
