//! The datasource's floors hold (ARCHITECTURE.md): a module names nothing of a floor above
//! its own, `mirror/` nothing of `crawl/`, only the settings and the command line read the
//! environment, and no file outgrows a reader.

use std::path::{Path, PathBuf};

/// The folders (and top-level files) of `src/`, by floor, lowest first.
const FLOORS: [&[&str]; 4] = [
    &["repository", "store", "dify", "browse"],
    &["mirror"],
    &["crawl"],
    &["handlers", "cli", "settings", "main", "lib"],
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// `(file relative to src/, its text)` of every source file.
fn files() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    sources(&src, &mut found);
    found.sort();
    found
        .into_iter()
        .map(|path| {
            let name = path.strip_prefix(&src).unwrap().display().to_string();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect()
}

fn floor_of(module: &str) -> usize {
    FLOORS
        .iter()
        .position(|floor| floor.contains(&module))
        .unwrap_or_else(|| {
            panic!("src/{module} is on no floor: add it to FLOORS and ARCHITECTURE.md")
        })
}

/// The top module a file belongs to: `mirror/watch.rs` → `mirror`, `settings.rs` → `settings`.
fn module_of(file: &str) -> &str {
    file.split('/').next().unwrap().trim_end_matches(".rs")
}

#[test]
fn no_module_names_a_floor_above_its_own() {
    let mut wrong = Vec::new();
    for (file, text) in files() {
        let floor = floor_of(module_of(&file));
        for (n, line) in text.lines().enumerate() {
            for (at, _) in line.match_indices("crate::") {
                let named = line[at + "crate::".len()..]
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .next()
                    .unwrap();
                if named == "GIT_ENV" || named.is_empty() {
                    continue;
                }
                let mirror_names_crawl = module_of(&file) == "mirror" && named == "crawl";
                if floor_of(named) > floor || mirror_names_crawl {
                    wrong.push(format!("src/{file}:{}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from a higher floor:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_the_settings_and_the_command_line_read_the_environment() {
    let readers: Vec<String> = files()
        .into_iter()
        .filter(|(_, text)| text.contains("std::env::var"))
        .map(|(file, _)| file)
        .filter(|file| !(file == "settings.rs" || file == "main.rs" || file.starts_with("cli/")))
        .collect();
    assert!(readers.is_empty(), "environment read in {readers:?}");
}

#[test]
fn no_source_file_outgrows_a_reader() {
    let long: Vec<String> = files()
        .into_iter()
        .filter(|(_, text)| text.lines().count() > 450)
        .map(|(file, text)| format!("src/{file}: {} lines", text.lines().count()))
        .collect();
    assert!(long.is_empty(), "{long:?}");
}
