//! The configured repository and the names of its documents: the datasource parameters,
//! the credentials, fetching the branch, the identity (config hash, `source_url`, title,
//! description) every document carries, and a file's link on its Git host.

pub mod credentials;
pub mod fetch;
pub mod identity;
pub mod params;
pub mod web_link;

/// At most 20 paths (or lines) for a log or a summary, then how many more.
pub fn shorten(paths: &[&str]) -> String {
    let mut text = paths
        .iter()
        .take(20)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > 20 {
        text.push_str(&format!(" and {} more", paths.len() - 20));
    }
    text
}
