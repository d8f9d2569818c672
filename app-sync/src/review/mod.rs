//! Reviewing app files offline, so a CI job on a pull request needs no Dify: what changed
//! node by node ([`semantic_diff`]) and what would break ([`lint`]), over the app files of
//! a local checkout.

pub mod graph;
pub mod lint;
pub mod semantic_diff;

use std::path::{Path, PathBuf};

use graph::AppGraph;
use semantic_diff::SemanticDiff;

/// The largest app file read (a DSL is a few hundred KiB at most).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// How a diff is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiffFormat {
    /// A unified diff of the normalized YAML.
    #[default]
    Unified,
    /// Nodes, edges, variables and features that changed, for a terminal.
    Semantic,
    /// The semantic diff as Markdown, for a pull-request comment.
    Markdown,
}

impl DiffFormat {
    /// The format a tool parameter names (empty: unified).
    pub fn named(name: &str) -> Result<DiffFormat, String> {
        match name.trim() {
            "" | "unified" => Ok(DiffFormat::Unified),
            "semantic" => Ok(DiffFormat::Semantic),
            "markdown" => Ok(DiffFormat::Markdown),
            other => Err(format!(
                "format must be unified, semantic or markdown, not {:?}",
                other.chars().take(40).collect::<String>()
            )),
        }
    }
}

/// The semantic diff of two DSL texts under `title` (a text that is not YAML reads as an
/// empty app, and says so).
pub fn semantic(title: &str, old: &str, new: &str, markdown: bool) -> String {
    semantic_change(old, new).render(title, markdown)
}

/// What changed between two DSL texts, node by node (empty: the same app).
pub fn semantic_change(old: &str, new: &str) -> SemanticDiff {
    let read = |text: &str| AppGraph::parse(text).unwrap_or_default();
    SemanticDiff::between(&read(old), &read(new))
}

/// A DSL text with every secret replaced by its placeholder (as it is when nothing was found,
/// or when it is not YAML): for a diff that may be shown where the file is not.
pub fn redacted(text: &str) -> String {
    let Ok(mut yaml) = serde_yaml::from_str::<serde_yaml::Value>(text) else {
        return text.to_string();
    };
    match crate::secrets::redact(&mut yaml).is_empty() {
        true => text.to_string(),
        false => serde_yaml::to_string(&yaml).unwrap_or_default(),
    }
}

/// Whether `path` is an app file as App Git Sync writes them: `…apps/<name>.yml`.
pub fn is_app_file(path: &str) -> bool {
    let mut parts = path.rsplit('/');
    let (name, dir) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    dir == "apps" && name.ends_with(".yml") && name.len() > ".yml".len()
}

/// One app file that differs between a revision and the working tree.
#[derive(Debug, Clone)]
pub struct ChangedFile {
    pub path: String,
    /// The text at the revision, and in the working tree (`None`: absent there).
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Every app file of the checkout around `dir` that differs between `base` (a commit, a
/// branch, `origin/main`, …) and the working tree.
pub fn changed_since(dir: &Path, base: &str) -> Result<Vec<ChangedFile>, String> {
    let repo = git2::Repository::discover(dir)
        .map_err(|_| format!("{} is not in a Git checkout", dir.display()))?;
    let workdir = repo
        .workdir()
        .ok_or("the repository has no working tree")?
        .to_path_buf();
    let tree = repo
        .revparse_single(base)
        .and_then(|object| object.peel_to_tree())
        .map_err(|_| {
            format!(
                "--base {:?} names no commit or branch here (fetch it first: git fetch origin {0})",
                base.chars().take(80).collect::<String>()
            )
        })?;
    let diff = repo
        .diff_tree_to_workdir_with_index(Some(&tree), None)
        .map_err(|e| format!("comparing with {base}: {}", e.message()))?;
    let mut changed = Vec::new();
    for delta in diff.deltas() {
        let (old_path, new_path) = (delta.old_file().path(), delta.new_file().path());
        let Some(path) = new_path.or(old_path).and_then(Path::to_str) else {
            continue;
        };
        if !is_app_file(path) {
            continue;
        }
        let old = match old_path {
            Some(old_path) if delta.old_file().exists() => tree
                .get_path(old_path)
                .ok()
                .and_then(|entry| entry.to_object(&repo).ok())
                .and_then(|object| object.into_blob().ok())
                .map(|blob| String::from_utf8_lossy(blob.content()).into_owned()),
            _ => None,
        };
        let new = read_file(&workdir.join(path))?;
        changed.push(ChangedFile {
            path: path.to_string(),
            old,
            new,
        });
    }
    changed.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changed)
}

/// A file's text, `None` when it does not exist; a link, or larger than any DSL, is an error.
pub fn read_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(None),
        Ok(meta) if !meta.is_file() => Err(format!(
            "{} is not a plain file (a link or a folder), so it is not read as an app",
            path.display()
        )),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => Err(format!(
            "{} is {} bytes, more than an app's DSL can be ({MAX_FILE_BYTES})",
            path.display(),
            meta.len()
        )),
        Ok(_) => std::fs::read(path)
            .map(|bytes| Some(String::from_utf8_lossy(&bytes).into_owned()))
            .map_err(|e| format!("{}: {}", path.display(), e.kind())),
    }
}

/// The app files under `dir` (its `apps/` folders, any depth, `.git` and `target` aside).
pub fn app_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let file_type = entry.file_type().ok();
            if file_type.is_some_and(|t| t.is_dir()) {
                if name != ".git" && name != "target" && name != "node_modules" {
                    pending.push(path);
                }
            } else if file_type.is_some_and(|t| t.is_file())
                && is_app_file(&path.to_string_lossy().replace('\\', "/"))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_files_by_name() {
        assert!(is_app_file("apps/support-bot--5f3c9e2a.yml"));
        assert!(is_app_file("dify/apps/x.yml"));
        assert!(!is_app_file("apps/.yml"));
        assert!(!is_app_file("apps/sub/x.yml"));
        assert!(!is_app_file("x.yml"));
        assert!(!is_app_file("apps/x.yaml"));
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(DiffFormat::named("").unwrap(), DiffFormat::Unified);
        assert_eq!(
            DiffFormat::named(" markdown ").unwrap(),
            DiffFormat::Markdown
        );
        assert!(DiffFormat::named("html").is_err());
    }
}
