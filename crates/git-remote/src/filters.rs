//! Which paths of a tree are wanted: sub-directory, extensions, include and exclude globs.
//! Paths are relative to the repository root, `/`-separated.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

#[derive(Debug, Clone, Default)]
pub struct PathFilter {
    subdir: String,
    /// Lower-case, each with its leading dot.
    extensions: Vec<String>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

/// Splits a comma-separated list, trimmed, blanks dropped.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

impl PathFilter {
    /// `extensions`, `include` and `exclude` are comma-separated lists; empty means "all".
    pub fn new(
        subdir: &str,
        extensions: &str,
        include: &str,
        exclude: &str,
    ) -> Result<Self, FilterError> {
        let subdir = normalize_subdir(subdir)?;
        let extensions = split_list(extensions)
            .into_iter()
            .map(|ext| {
                let ext = ext.to_lowercase();
                if ext.starts_with('.') {
                    ext
                } else {
                    format!(".{ext}")
                }
            })
            .collect();
        Ok(PathFilter {
            subdir,
            extensions,
            include: glob_set("include", include)?,
            exclude: glob_set("exclude", exclude)?,
        })
    }

    /// The sub-directory (no leading or trailing `/`), empty for the whole repository.
    pub fn subdir(&self) -> &str {
        &self.subdir
    }

    /// Whether a file at `path` is wanted.
    pub fn matches(&self, path: &str) -> bool {
        self.in_subdir(path)
            && self.has_extension(path)
            && self.include.as_ref().is_none_or(|set| set.is_match(path))
            && !self.exclude.as_ref().is_some_and(|set| set.is_match(path))
    }

    /// Whether anything under directory `dir` can be wanted, so a walk can skip the rest.
    pub fn may_enter(&self, dir: &str) -> bool {
        if self.subdir.is_empty() {
            return true;
        }
        let dir = dir.trim_end_matches('/');
        dir == self.subdir
            || dir.starts_with(&format!("{}/", self.subdir))
            || self.subdir.starts_with(&format!("{dir}/"))
            || dir.is_empty()
    }

    fn in_subdir(&self, path: &str) -> bool {
        self.subdir.is_empty()
            || path
                .strip_prefix(self.subdir.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    }

    fn has_extension(&self, path: &str) -> bool {
        if self.extensions.is_empty() {
            return true;
        }
        let lower = path.to_lowercase();
        self.extensions
            .iter()
            .any(|ext| lower.ends_with(ext.as_str()))
    }
}

fn normalize_subdir(subdir: &str) -> Result<String, FilterError> {
    let subdir = subdir.trim().replace('\\', "/");
    let parts: Vec<&str> = subdir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(FilterError(format!(
            "subdir {subdir:?} must not contain `..`"
        )));
    }
    Ok(parts.join("/"))
}

fn glob_set(name: &str, list: &str) -> Result<Option<GlobSet>, FilterError> {
    let patterns = split_list(list);
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    let mut bad = Vec::new();
    for pattern in &patterns {
        // A pattern without a slash matches at any depth, as in .gitignore.
        let pattern_text = pattern.trim_start_matches('/');
        let full = if pattern.contains('/') {
            pattern_text.to_string()
        } else {
            format!("**/{pattern_text}")
        };
        match GlobBuilder::new(&full).literal_separator(true).build() {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(error) => bad.push(format!("{pattern:?} ({})", error.kind())),
        }
    }
    if !bad.is_empty() {
        return Err(FilterError(format!(
            "{name} has invalid glob patterns: {}",
            bad.join(", ")
        )));
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| FilterError(format!("{name}: {e}")))
}

/// A path that is safe to report: relative, no `..`, `.` or empty components, no `.git`
/// directory.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('/') {
        return Err("the path is not relative");
    }
    for component in path.split('/') {
        match component {
            "" | "." => return Err("the path has an empty or `.` component"),
            ".." => return Err("the path has a `..` component"),
            c if c.eq_ignore_ascii_case(".git") => {
                return Err("the path is inside a .git directory")
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn filter(subdir: &str, extensions: &str, include: &str, exclude: &str) -> PathFilter {
        PathFilter::new(subdir, extensions, include, exclude).unwrap()
    }

    #[test]
    fn extensions_ignore_case_and_the_dot() {
        let f = filter("", " MD, .txt ,,", "", "");
        assert!(f.matches("README.md") && f.matches("a/b/NOTES.TXT") && f.matches("x.Md"));
        assert!(!f.matches("main.rs") && !f.matches("md"));
    }

    #[test]
    fn subdir_is_a_directory_prefix() {
        let f = filter("/docs/", "", "", "");
        assert!(f.matches("docs/a.md") && f.matches("docs/x/y.md"));
        assert!(!f.matches("docs.md") && !f.matches("docsx/a.md") && !f.matches("a/docs/b.md"));
        assert!(
            f.may_enter("") && f.may_enter("docs") && f.may_enter("docs/x") && !f.may_enter("src")
        );
        assert!(PathFilter::new("docs/../etc", "", "", "").is_err());
    }

    #[test]
    fn globs_include_and_exclude() {
        let f = filter("", "", "docs/**/*.md, README.md", "**/drafts/**, *.tmp.md");
        assert!(
            f.matches("docs/guide/intro.md")
                && f.matches("README.md")
                && f.matches("pkg/README.md")
        );
        assert!(!f.matches("src/lib.rs"));
        assert!(!f.matches("docs/drafts/x.md") && !f.matches("docs/a.tmp.md"));
        let err = PathFilter::new("", "", "docs/[", "").unwrap_err();
        assert!(
            err.0.contains("include") && err.0.contains("docs/["),
            "{err}"
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            "../x",
            "a/../b",
            "/etc/passwd",
            ".git/config",
            "a/.GIT/hooks",
            "a//b",
            "./a",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for ok in [
            "a",
            "a/b.c",
            "notes..md",
            ".github/workflows/ci.yml",
            ".gitignore",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
    }

    proptest! {
        #[test]
        fn an_empty_filter_takes_every_path(path in "[a-z]{1,6}(/[a-z.]{1,6}){0,4}") {
            prop_assert!(filter("", "", "", "").matches(&path));
        }

        #[test]
        fn subdir_matches_exactly_its_descendants(dir in "[a-z]{1,5}", path in "[a-z]{1,5}(/[a-z]{1,5}){0,3}") {
            let f = filter(&dir, "", "", "");
            let expected = path.starts_with(&format!("{dir}/"));
            prop_assert_eq!(f.matches(&path), expected);
        }

        #[test]
        fn extension_filter_is_case_insensitive(stem in "[a-z]{1,8}", ext in "[a-z]{1,4}", upper in any::<bool>()) {
            let f = filter("", &ext, "", "");
            let name = format!("{stem}.{}", if upper { ext.to_uppercase() } else { ext.clone() });
            prop_assert!(f.matches(&name));
            let other = format!("{stem}.{ext}x");
            prop_assert!(!f.matches(&other));
        }

        #[test]
        fn excluded_paths_never_match(path in "[a-z]{1,5}(/[a-z]{1,5}){0,3}") {
            let f = filter("", "", "", &path);
            prop_assert!(!f.matches(&path));
        }

        #[test]
        fn paths_with_dotdot_components_are_refused(a in "[a-z]{0,5}", b in "[a-z]{1,5}") {
            let path = if a.is_empty() { format!("../{b}") } else { format!("{a}/../{b}") };
            prop_assert!(check_path(&path).is_err());
        }
    }
}
