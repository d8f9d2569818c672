//! Large repositories made fast: commits written into a bare repository with
//! `git fast-import` (100,000 files in seconds), for the benchmark and the tests that need
//! more files than `TestRepo` makes quickly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::git_servers::run;

/// Path → content.
pub type Tree = BTreeMap<String, Vec<u8>>;

/// Writes commits into a bare repository with `git fast-import`.
pub struct ImportedRepo {
    pub bare: PathBuf,
    /// The branch's files as the last commit left them.
    pub tree: Tree,
    clock: u64,
}

impl ImportedRepo {
    pub fn create(bare: &Path, tree: Tree) -> ImportedRepo {
        run(Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(bare));
        run(Command::new("git").arg("-C").arg(bare).args([
            "config",
            "uploadpack.allowAnySHA1InWant",
            "true",
        ]));
        let mut importer = ImportedRepo {
            bare: bare.to_path_buf(),
            tree: Tree::new(),
            clock: 1_700_000_000,
        };
        importer.commit(tree.into_iter().collect(), &[], false, "initial import");
        importer
    }

    /// Applies `changes` (path → content) and `deleted`; `rewrite` makes a new root commit
    /// (a force push).
    pub fn commit(
        &mut self,
        changes: Vec<(String, Vec<u8>)>,
        deleted: &[String],
        rewrite: bool,
        message: &str,
    ) {
        self.clock += 60;
        let mut stream = Vec::new();
        writeln!(
            stream,
            "commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000",
            self.clock
        )
        .unwrap();
        writeln!(stream, "data {}\n{message}", message.len()).unwrap();
        if !rewrite && !self.tree.is_empty() {
            writeln!(stream, "from refs/heads/main^0").unwrap();
        }
        for path in deleted {
            self.tree.remove(path);
            if !rewrite {
                writeln!(stream, "D {path}").unwrap();
            }
        }
        let whole_tree = rewrite || self.tree.is_empty();
        let changed: Vec<String> = changes.iter().map(|(path, _)| path.clone()).collect();
        for (path, content) in changes {
            self.tree.insert(path, content);
        }
        // A normal commit inherits unchanged files from its parent; a root commit lists all.
        let paths: Vec<String> = if whole_tree {
            self.tree.keys().cloned().collect()
        } else {
            changed
        };
        for path in paths {
            let content = &self.tree[&path];
            writeln!(stream, "M 100644 inline {path}\ndata {}", content.len()).unwrap();
            stream.extend_from_slice(content);
            stream.push(b'\n');
        }
        stream.extend_from_slice(b"done\n");
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.bare)
            .args(["fast-import", "--quiet", "--done", "--force"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&stream).unwrap();
        assert!(child.wait().unwrap().success());
    }
}
