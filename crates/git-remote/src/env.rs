//! The environment variables that tune the Git layer. The program using it names them:
//! `<PREFIX>_<NAME>`, e.g. `GIT_DATASOURCE_CACHE_DIR` for the prefix `GIT_DATASOURCE`.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVars {
    pub prefix: &'static str,
}

impl EnvVars {
    pub const fn new(prefix: &'static str) -> Self {
        EnvVars { prefix }
    }

    /// The full name of the variable `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(self.name(name)).ok()
    }

    /// `1`, `true` or `yes`.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"))
    }

    pub fn number<T: FromStr>(&self, name: &str) -> Option<T> {
        self.get(name)?.trim().parse().ok()
    }

    /// The prefix as a directory name: `git-datasource` for `GIT_DATASOURCE`.
    pub fn dir_name(&self) -> String {
        self.prefix.to_ascii_lowercase().replace('_', "-")
    }
}
