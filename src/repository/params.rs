//! The datasource parameters of a crawl, read leniently: values may arrive as numbers or
//! booleans, are trimmed, and an unresolved pipeline variable (`{{#...#}}`) counts as missing.

use serde_json::{Map, Value};

use git_remote::PathFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Only what changed since the last complete run.
    Incremental,
    /// Ignore stored state, deliver everything, then record it.
    Full,
    /// Every file of the branch in every run, or an error: for a caller that deletes what a
    /// run does not return (an Agent knowledge base's `web` source, Dify 1.18+), where a
    /// partial or incremental result would delete the rest.
    Snapshot,
}

impl SyncMode {
    /// Whether a run ignores what earlier runs delivered.
    pub fn ignores_state(self) -> bool {
        self != SyncMode::Incremental
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlParams {
    pub repo_url: String,
    pub branch: String,
    pub subdir: String,
    pub extensions: String,
    pub include: String,
    pub exclude: String,
    pub sync_mode: SyncMode,
    /// The knowledge base to mirror into (a normalized id), when given.
    pub knowledge_base_id: Option<String>,
    /// With mirroring: push the part of a change set the crawl's message cannot hold once
    /// the user's import of the first part is indexed (else the next run offers it).
    pub push_rest: bool,
}

impl CrawlParams {
    /// Reads `datasource_parameters`; every problem is listed at once.
    pub fn from_json(value: Option<&Value>) -> Result<CrawlParams, Vec<String>> {
        let empty = Map::new();
        let object = match value {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(object)) => object,
            Some(_) => return Err(vec!["datasource_parameters must be an object".into()]),
        };
        let mut problems = Vec::new();
        let mut text = |name: &str| -> String {
            match object.get(name) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => clean(s),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(other) => {
                    problems.push(format!(
                        "{name} must be text, not {}",
                        dify_plugin::protocol::wire::json_kind(other)
                    ));
                    String::new()
                }
            }
        };
        let repo_url = text("repo_url");
        let branch = text("branch");
        let subdir = text("subdir");
        let extensions = text("extensions");
        let include = text("include");
        let exclude = text("exclude");
        let mode = text("sync_mode");
        let knowledge_base = text("knowledge_base_id");
        let large_change_sets = text("large_change_sets");
        if repo_url.is_empty() {
            problems.push(
                "repo_url is missing: set the repository URL in the datasource node (or map it to a \
                 pipeline input that has a value)"
                    .into(),
            );
        }
        let sync_mode = match mode.to_ascii_lowercase().as_str() {
            "" | "incremental" => SyncMode::Incremental,
            "full" => SyncMode::Full,
            "snapshot" => SyncMode::Snapshot,
            other => {
                problems.push(format!(
                    "sync_mode must be incremental, full or snapshot, not {:?}",
                    shown(other)
                ));
                SyncMode::Incremental
            }
        };
        let push_rest = match large_change_sets.to_ascii_lowercase().as_str() {
            "" | "next_run" | "false" => false,
            "push_after_import" | "true" => true,
            other => {
                problems.push(format!(
                    "large_change_sets must be next_run or push_after_import, not {:?}",
                    shown(other)
                ));
                false
            }
        };
        if let Err(error) = PathFilter::new(&subdir, &extensions, &include, &exclude) {
            problems.push(error.0);
        }
        if !branch.is_empty() && !valid_branch_name(&branch) {
            problems.push(format!(
                "branch {:?} is not a valid branch, tag or commit name (no spaces, `..`, `*`, `?`, \
                 `[`, `^`, `~`, `:` or `@{{`); use a name such as main or v2.1, or a full commit id",
                branch.chars().take(100).collect::<String>()
            ));
        }
        let knowledge_base_id = match knowledge_base.as_str() {
            "" => None,
            given => parse_knowledge_base_id(given)
                .map_err(|problem| problems.push(problem))
                .ok(),
        };
        if sync_mode == SyncMode::Snapshot && knowledge_base_id.is_some() {
            problems.push(
                "sync_mode snapshot (the whole branch every run, for an Agent knowledge base's \
                 source) and knowledge_base_id (mirroring a pipeline knowledge base) do not go \
                 together: clear knowledge_base_id, or use incremental with mirroring"
                    .into(),
            );
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CrawlParams {
            repo_url,
            branch: if branch.is_empty() {
                "main".into()
            } else {
                branch
            },
            subdir,
            extensions,
            include,
            exclude,
            sync_mode,
            knowledge_base_id,
            push_rest,
        })
    }

    pub fn filter(&self) -> PathFilter {
        PathFilter::new(&self.subdir, &self.extensions, &self.include, &self.exclude)
            .expect("checked when the parameters were read")
    }
}

/// Git's own rules for a branch or tag name (a full commit id passes too); `*` would match
/// every branch of the server.
fn valid_branch_name(name: &str) -> bool {
    name.len() <= 255 && git2::Reference::is_valid_name(&format!("refs/heads/{name}"))
}

/// The start of a refused value, enough to recognize it: a long paste may hold anything.
fn shown(value: &str) -> String {
    match value.char_indices().nth(40) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

/// Trims, and treats a value still shaped like a pipeline variable as missing.
fn clean(text: &str) -> String {
    let text = text.trim();
    if text.starts_with("{{#") && text.contains("#}}") {
        return String::new();
    }
    text.to_string()
}

/// Reads a knowledge base id: the id itself, or any URL of the knowledge base
/// (`…/datasets/<id>/documents`).
pub fn parse_knowledge_base_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    let candidate = match text.find("/datasets/") {
        Some(at) => text[at + "/datasets/".len()..]
            .split(['/', '?', '#'])
            .next()
            .unwrap_or(""),
        None => text,
    };
    let id = candidate.to_ascii_lowercase();
    if crate::dify::knowledge::is_uuid(&id) {
        Ok(id)
    } else {
        // The value is not echoed: a pasted URL may carry a token in its query.
        Err(format!(
            "knowledge_base_id must be the id in the knowledge base's URL (…/datasets/<id>/documents, \
             36 characters like 3f2a…-…); the value given ({} characters) holds no such id",
            text.chars().count()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_values() {
        let params = CrawlParams::from_json(Some(&json!({
            "repo_url": "  https://example.com/r.git ", "branch": 2024, "subdir": "{{#rag.shared.subdir#}}",
            "extensions": null, "sync_mode": "FULL"
        })))
        .unwrap();
        assert_eq!(params.repo_url, "https://example.com/r.git");
        assert_eq!(params.branch, "2024");
        assert_eq!(params.subdir, "");
        assert_eq!(params.sync_mode, SyncMode::Full);
    }

    #[test]
    fn snapshot_is_a_mode_of_its_own_and_never_mirrors() {
        let params = CrawlParams::from_json(Some(&json!({
            "repo_url": "https://example.com/r.git", "sync_mode": "Snapshot"
        })))
        .unwrap();
        assert_eq!(params.sync_mode, SyncMode::Snapshot);
        assert!(params.sync_mode.ignores_state());
        assert!(!SyncMode::Incremental.ignores_state());
        let problems = CrawlParams::from_json(Some(&json!({
            "repo_url": "https://example.com/r.git", "sync_mode": "snapshot",
            "knowledge_base_id": "0b7e7a3c-1a2b-4c3d-8e9f-0a1b2c3d4e5f"
        })))
        .unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("snapshot") && p.contains("knowledge_base_id")),
            "{problems:?}"
        );
    }

    #[test]
    fn every_problem_at_once() {
        let problems = CrawlParams::from_json(Some(&json!({
            "repo_url": "{{#rag.1.url#}}", "sync_mode": "sometimes", "include": "a/[", "branch": ["x"]
        })))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("repo_url is missing")));
        assert!(problems.iter().any(|p| p.contains("sync_mode")));
        assert!(problems.iter().any(|p| p.contains("include")));
        assert!(problems.iter().any(|p| p.contains("branch must be text")));
    }

    #[test]
    fn invalid_branch_names_are_parameter_errors() {
        for branch in [
            "*",
            "../x",
            "main^{tree}",
            "a b",
            "x:y",
            "feature/*",
            "ref@{1}",
            "a..b",
        ] {
            let problems = CrawlParams::from_json(Some(
                &json!({"repo_url": "https://h/r.git", "branch": branch}),
            ))
            .unwrap_err();
            assert!(
                problems[0].contains("not a valid branch"),
                "{branch}: {problems:?}"
            );
        }
        for branch in [
            "main",
            "release/2.1",
            "v1.0",
            "0123456789abcdef0123456789abcdef01234567",
        ] {
            CrawlParams::from_json(Some(
                &json!({"repo_url": "https://h/r.git", "branch": branch}),
            ))
            .unwrap();
        }
    }

    #[test]
    fn defaults() {
        let params =
            CrawlParams::from_json(Some(&json!({"repo_url": "git@h:o/r.git", "branch": ""})))
                .unwrap();
        assert_eq!(
            (params.branch.as_str(), params.sync_mode, params.push_rest),
            ("main", SyncMode::Incremental, false)
        );
        for (value, push_rest) in [
            (json!("push_after_import"), true),
            (json!(true), true),
            (json!("next_run"), false),
            (json!(false), false),
        ] {
            let params = CrawlParams::from_json(Some(
                &json!({"repo_url": "git@h:o/r.git", "large_change_sets": value}),
            ))
            .unwrap();
            assert_eq!(params.push_rest, push_rest, "{value}");
        }
        let problems = CrawlParams::from_json(Some(
            &json!({"repo_url": "git@h:o/r.git", "large_change_sets": "always"}),
        ))
        .unwrap_err();
        assert!(problems[0].contains("large_change_sets"), "{problems:?}");
        // A long paste is not echoed whole, whatever it holds.
        let pasted = format!("{}ghp_SeCrEtToKeN", "x".repeat(100_000));
        let problems = CrawlParams::from_json(Some(&json!({"repo_url": "git@h:o/r.git",
            "large_change_sets": pasted, "sync_mode": pasted})))
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems
            .iter()
            .all(|p| p.len() < 200 && !p.contains("SeCrEt")));
    }

    #[test]
    fn knowledge_base_ids() {
        let id = "e560d9db-ff43-4deb-9cf1-a2971d563066";
        assert_eq!(parse_knowledge_base_id(id).unwrap(), id);
        assert_eq!(parse_knowledge_base_id(&id.to_uppercase()).unwrap(), id);
        assert_eq!(
            parse_knowledge_base_id(&format!("http://localhost/datasets/{id}/documents?x=1"))
                .unwrap(),
            id
        );
        assert!(parse_knowledge_base_id("my-kb").is_err());
        let error = parse_knowledge_base_id("http://x/datasets/nope?token=SeCrEt").unwrap_err();
        assert!(!error.contains("SeCrEt"), "{error}");
        assert!(parse_knowledge_base_id("").is_err());
    }
}
