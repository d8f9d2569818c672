//! A Dify datasource plugin that turns a Git repository into a knowledge base.

pub mod aarch64_build;
pub mod crawl;
pub mod crawl_command;
pub mod credentials;
pub mod declaration;
pub mod git;
pub mod handlers;
pub mod mirror;
pub mod package;
pub mod protocol;
pub mod sync_command;
