//! Git repositories over the network with libgit2: a cache of bare clones brought up to date
//! shallowly, every authentication path, the filtered tree walk and blob classification.

pub mod auth;
pub mod blob;
pub mod cache;
pub mod client;
pub mod credentials;
mod env;
mod error;
pub mod filters;
mod nodelay;
pub mod push;
pub mod tree;
pub mod url;

pub use auth::{HostKeyStore, MemoryHostKeys};
pub use blob::{read_blobs, BlobRead, BlobReader};
pub use cache::RepoCache;
pub use client::{FetchRequest, FetchSettings, Fetched, GitClient, RefKind, RepoPlace};
pub use credentials::{CredentialProblem, GitCredentials};
pub use env::EnvVars;
pub use error::{Fault, GitError};
pub use filters::PathFilter;
pub use push::{read_file, write_commit, Author, Branch, FileChange};
pub use tree::{
    diff_commits, fill_sizes, list_files, Change, FileEntry, SkipReason, Skipped, TreeListing,
};
