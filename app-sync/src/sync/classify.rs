//! Where an app stands, from three hashes: Dify's export now, the Git file now, and the base
//! of the last sync. Never guesses: two sides that both moved are a conflict.

use serde::Serialize;

use crate::state::AppBase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AppState {
    InSync,
    ChangedInDify,
    ChangedInGit,
    /// Both sides changed since the last sync (or they differ and were never synced).
    Conflict,
    OnlyInDify,
    OnlyInGit,
    /// Its file was removed in Git since the last sync, and Dify did not change it.
    RemovedInGit,
}

impl AppState {
    pub fn describe(self) -> &'static str {
        match self {
            AppState::InSync => "in sync",
            AppState::ChangedInDify => "changed in Dify",
            AppState::ChangedInGit => "changed in Git",
            AppState::Conflict => "changed on both (conflict)",
            AppState::OnlyInDify => "only in Dify",
            AppState::OnlyInGit => "only in Git",
            AppState::RemovedInGit => "file removed in Git",
        }
    }
}

/// `dify` and `git` are normalized hashes (`None`: no such app, no such file).
pub fn classify(dify: Option<&str>, git: Option<&str>, base: Option<&AppBase>) -> AppState {
    match (dify, git, base) {
        (None, _, _) => AppState::OnlyInGit,
        (Some(_), None, None) => AppState::OnlyInDify,
        // Deleted in Git after a sync: a deletion, unless Dify moved on too.
        (Some(d), None, Some(base)) => match d == base.dify_hash {
            true => AppState::RemovedInGit,
            false => AppState::Conflict,
        },
        (Some(d), Some(g), _) if d == g => AppState::InSync,
        (Some(_), Some(_), None) => AppState::Conflict,
        (Some(d), Some(g), Some(base)) => match (d != base.dify_hash, g != base.git_hash) {
            (false, false) => AppState::InSync,
            (true, false) => AppState::ChangedInDify,
            (false, true) => AppState::ChangedInGit,
            (true, true) => AppState::Conflict,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn base(dify: &str, git: &str) -> AppBase {
        AppBase {
            commit: "c".into(),
            path: "apps/a.yml".into(),
            dify_hash: dify.into(),
            git_hash: git.into(),
        }
    }

    #[test]
    fn each_state() {
        let b = base("h0", "h0");
        assert_eq!(classify(Some("h0"), Some("h0"), Some(&b)), AppState::InSync);
        assert_eq!(
            classify(Some("h1"), Some("h0"), Some(&b)),
            AppState::ChangedInDify
        );
        assert_eq!(
            classify(Some("h0"), Some("h2"), Some(&b)),
            AppState::ChangedInGit
        );
        assert_eq!(
            classify(Some("h1"), Some("h2"), Some(&b)),
            AppState::Conflict
        );
        assert_eq!(classify(Some("h1"), None, None), AppState::OnlyInDify);
        assert_eq!(classify(None, Some("h1"), Some(&b)), AppState::OnlyInGit);
        assert_eq!(classify(Some("h1"), Some("h2"), None), AppState::Conflict);
        assert_eq!(classify(Some("h0"), None, Some(&b)), AppState::RemovedInGit);
        assert_eq!(classify(Some("h1"), None, Some(&b)), AppState::Conflict);
    }

    proptest! {
        /// A side that did not move never loses to the other: whatever the hashes, the state
        /// only says "changed in X" when X really differs from its base, and a conflict is
        /// reported whenever both sides moved to different contents.
        #[test]
        fn a_change_is_never_attributed_to_the_wrong_side(d in 0u8..4, g in 0u8..4, bd in 0u8..4, bg in 0u8..4) {
            let (d, g) = (d.to_string(), g.to_string());
            let b = base(&bd.to_string(), &bg.to_string());
            let state = classify(Some(&d), Some(&g), Some(&b));
            let dify_moved = d != b.dify_hash;
            let git_moved = g != b.git_hash;
            match state {
                AppState::ChangedInDify => prop_assert!(dify_moved && !git_moved),
                AppState::ChangedInGit => prop_assert!(git_moved && !dify_moved),
                AppState::Conflict => prop_assert!(dify_moved && git_moved && d != g),
                AppState::InSync => prop_assert!(d == g || (!dify_moved && !git_moved)),
                _ => prop_assert!(false, "both sides exist"),
            }
        }
    }
}
