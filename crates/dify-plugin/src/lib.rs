//! A Dify plugin runtime that knows no particular plugin: the daemon ⇄ plugin protocol
//! (transports, sessions, plugin storage), the declarations and their checks, tool requests,
//! packaging, and what a client of Dify's own HTTP APIs needs.

pub mod aarch64_build;
pub mod commands;
pub mod declaration;
pub mod dify_http;
pub mod endpoint;
pub mod package;
pub mod protocol;
pub mod tool;
