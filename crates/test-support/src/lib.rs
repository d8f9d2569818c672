//! The workspace's test helpers, started by the tests themselves: a fake plugin daemon that
//! speaks the real wire format and keeps real plugin storage, real Git servers on loopback,
//! key material, an HTTP server for API fakes and a fake of Dify's Knowledge API, a
//! package's files as the daemon unpacks them, and the real Dify API.

pub mod daemon_rules;
pub mod fake_daemon;
pub mod git_servers;
pub mod imported_repo;
pub mod keys;
pub mod knowledge_api;
pub mod loopback_http;
pub mod package_files;
pub mod real_dify;
