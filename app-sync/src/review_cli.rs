//! The offline review commands: `diff --base` and `lint`, on a checkout's app files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use app_git_sync::review::lint;
use app_git_sync::review::{self, DiffFormat};

/// Every app file changed since `base`, in `format`.
pub fn diff_since(dir: &Path, base: &str, format: DiffFormat) -> ExitCode {
    let changed = match review::changed_since(dir, base) {
        Ok(changed) => changed,
        Err(problem) => {
            eprintln!("error: {problem}");
            return ExitCode::FAILURE;
        }
    };
    if changed.is_empty() {
        println!("No app file changed since {base}.");
        return ExitCode::SUCCESS;
    }
    for file in changed {
        let title = match (&file.old, &file.new) {
            (None, _) => format!("{} (new)", file.path),
            (_, None) => format!("{} (deleted)", file.path),
            _ => file.path.clone(),
        };
        let (old, new) = (file.old.unwrap_or_default(), file.new.unwrap_or_default());
        let text = match format {
            DiffFormat::Unified => app_git_sync::sync::normalized_diff(
                &format!("{base}:{}", file.path),
                &review::redacted(&old),
                "working tree",
                &review::redacted(&new),
            ),
            semantic => review::semantic(&title, &old, &new, semantic == DiffFormat::Markdown),
        };
        println!("{text}");
    }
    ExitCode::SUCCESS
}

/// Lints the app files of `paths` (files, or folders searched for `apps/*.yml`).
pub fn lint(paths: &[PathBuf], deny_warnings: bool, json: bool) -> ExitCode {
    let roots = match paths.is_empty() {
        true => vec![PathBuf::from(".")],
        false => paths.to_vec(),
    };
    let mut files = Vec::new();
    for root in roots {
        match root.is_dir() {
            true => files.extend(review::app_files(&root)),
            false => files.push(root),
        }
    }
    let (mut errors, mut warnings) = (0, 0);
    let mut report = Vec::new();
    for file in &files {
        let shown = file.display().to_string();
        let findings = match review::read_file(file) {
            Ok(Some(text)) => lint::lint(&text),
            Ok(None) => vec![lint::unreadable(format!("{shown} does not exist"))],
            Err(problem) => vec![lint::unreadable(problem)],
        };
        let (errors_here, warnings_here) = lint::count(&findings);
        errors += errors_here;
        warnings += warnings_here;
        match json {
            true => report.push(serde_json::json!({"file": shown, "findings": findings})),
            false => print!("{}", lint::describe(&shown, &findings)),
        }
    }
    match json {
        true => println!("{}", serde_json::Value::from(report)),
        false => println!(
            "{} app files: {errors} errors, {warnings} warnings",
            files.len()
        ),
    }
    match errors > 0 || (deny_warnings && warnings > 0) {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    }
}
