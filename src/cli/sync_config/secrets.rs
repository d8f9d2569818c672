//! What an entry needs when it runs: its Knowledge API and its Git credentials, read from the
//! environment variables (or `<NAME>_FILE` files) it names. A variable that is not set fails
//! that entry alone, naming the variable, never a value.

use std::path::{Path, PathBuf};

use super::super::{git_credentials, read_secret_file, DifyArgs};
use super::{CredentialNames, Entry};
use crate::crawl::CrawlError;
use crate::dify::knowledge::KnowledgeApi;
use crate::repository::credentials::Credentials;
use crate::settings::Settings;
use git_remote::GitCredentials;

impl CredentialNames {
    /// The credentials, read from the variables and files named.
    fn read(&self) -> Result<Credentials, CrawlError> {
        let secret = |key: &str, name: &Option<String>| match name {
            Some(name) => named_secret(name, key),
            None => Ok(String::new()),
        };
        let file = |key: &str, path: &Option<PathBuf>| match path {
            Some(path) => read_secret_file(path, key),
            None => Ok(String::new()),
        };
        let ssh_private_key = match &self.ssh_key_file {
            Some(path) => read_secret_file(path, "credentials.ssh_key_file")?,
            None => secret("credentials.ssh_key_env", &self.ssh_key_env)?,
        };
        Ok(Credentials {
            git: GitCredentials {
                access_token: secret("credentials.token_env", &self.token_env)?,
                username: self.username.clone().unwrap_or_default(),
                ssh_private_key,
                ssh_passphrase: secret("credentials.ssh_passphrase_env", &self.ssh_passphrase_env)?,
                ssh_known_hosts: file("credentials.known_hosts_file", &self.known_hosts_file)?,
                ca_certificate: file("credentials.ca_file", &self.ca_file)?,
            },
            ..Credentials::default()
        })
    }
}

/// The secret in the variable `name`, or in the file `<name>_FILE` names; an error when
/// neither is set (the entry cannot run as written).
fn named_secret(name: &str, key: &str) -> Result<String, CrawlError> {
    if let Some(file) = std::env::var_os(format!("{name}_FILE")) {
        return read_secret_file(Path::new(&file), &format!("{name}_FILE ({key})"));
    }
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(CrawlError::Params(vec![format!(
            "the environment variable {name} ({key}) is not set, nor {name}_FILE: set it to the \
             secret, or change the name in the file"
        )])),
    }
}

impl Entry {
    /// The Knowledge API this entry reaches: its own or the defaults' `dify`, else the
    /// command's.
    pub fn api(&self, command: &DifyArgs, settings: &Settings) -> Result<KnowledgeApi, CrawlError> {
        let Some(name) = &self.dify.api_key_env else {
            let url = self.dify.api_url.clone();
            let command = DifyArgs {
                dify_api_url: url.unwrap_or_else(|| command.dify_api_url.clone()),
                dify_api_key: command.dify_api_key.clone(),
                dify_api_key_file: command.dify_api_key_file.clone(),
            };
            return command.api("sync", settings);
        };
        let key = named_secret(name, "dify.api_key_env")?;
        let url = self.dify.api_url.as_ref().unwrap_or(&command.dify_api_url);
        KnowledgeApi::new(url, &key)
            .map(|api| api.with_first_backoff(settings.dify_retry))
            .map_err(|problem| CrawlError::Params(vec![problem]))
    }

    /// The Git credentials: those the entry (or the defaults) names, else GIT_DATASOURCE_*.
    pub fn credentials(&self) -> Result<Credentials, CrawlError> {
        match &self.credentials {
            Some(names) => names.read(),
            None => git_credentials(),
        }
    }
}
