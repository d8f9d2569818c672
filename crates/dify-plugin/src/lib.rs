//! A Dify plugin runtime that knows no particular plugin: the daemon ⇄ plugin protocol
//! (transports, sessions, plugin storage), the declarations and their checks, and packaging.

pub mod aarch64_build;
pub mod commands;
pub mod declaration;
pub mod package;
pub mod protocol;
pub mod tool;
