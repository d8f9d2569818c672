//! App Git Sync's integration tests, one binary (one link instead of one per file): the
//! console client against a fake console and the real Dify, the tools through the fake
//! daemon, pushes to real Git servers, the command line, the package, and a whole-history
//! property.

mod cli;
mod console_real_dify;
mod console_sign_in;
mod environments;
mod never_lose_a_change;
mod openapi_sign_in;
mod package;
mod promotion_real_dify;
mod push_remote;
mod review;
mod secrets_in_git;
mod support;
mod tools_daemon;
mod webhook;
mod webhook_real_dify;
