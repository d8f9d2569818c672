//! The seal on the ids the browser hands out: proof that the credentials asking now are the
//! ones that were authorized (by the Git server, at the fetch of a listing) for that commit,
//! so a later page or file of the same listing is read from the cached clone without asking
//! the server again. Keyed by a secret of this process that changes every half hour (the
//! last one still holds): an id from another process (after a restart), an old one (access
//! may have been revoked since) or one made up is not trusted, and its request fetches with
//! its own credentials first, as any cache hit must.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use git_remote::GitCredentials;

/// Hex characters of a seal (128 bits of an HMAC-SHA256).
pub const SEAL_HEX: usize = 32;

/// How long a key signs; ids it sealed hold for one period more.
pub const KEY_PERIOD: Duration = Duration::from_secs(30 * 60);

pub struct Seal {
    keys: Mutex<Keys>,
    period: Duration,
}

struct Keys {
    current: [u8; 32],
    previous: Option<[u8; 32]>,
    since: Instant,
}

impl Seal {
    /// A seal with a fresh random key, changed every [`KEY_PERIOD`].
    pub fn new() -> Seal {
        Seal::with_period(KEY_PERIOD)
    }

    pub fn with_period(period: Duration) -> Seal {
        Seal {
            keys: Mutex::new(Keys {
                current: random_key(),
                previous: None,
                since: Instant::now(),
            }),
            period,
        }
    }

    /// The seal of `body` for the credentials `who` ([`fingerprint`]).
    pub fn sign(&self, who: &str, body: &str) -> String {
        let key = self.keys().0;
        hex::encode(&mac(&key, who, body)[..SEAL_HEX / 2])
    }

    /// Whether `seal` is this process's seal of `body` for `who`, made by its current key
    /// or the one before.
    pub fn verify(&self, who: &str, body: &str, seal: &str) -> bool {
        let Ok(given) = hex::decode(seal) else {
            return false;
        };
        let (current, previous) = self.keys();
        given.len() == SEAL_HEX / 2
            && [Some(current), previous]
                .into_iter()
                .flatten()
                .any(|key| openssl::memcmp::eq(&given, &mac(&key, who, body)[..SEAL_HEX / 2]))
    }

    /// The current and the previous key, turned over first when a period has passed (two:
    /// nothing of before is kept).
    fn keys(&self) -> ([u8; 32], Option<[u8; 32]>) {
        let mut keys = self.keys.lock().expect("seal keys");
        let age = keys.since.elapsed();
        if age >= self.period {
            keys.previous = (age < 2 * self.period).then_some(keys.current);
            keys.current = random_key();
            keys.since = Instant::now();
        }
        (keys.current, keys.previous)
    }
}

impl Default for Seal {
    fn default() -> Self {
        Seal::new()
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    openssl::rand::rand_bytes(&mut key).expect("the system's random source");
    key
}

fn mac(key: &[u8], who: &str, body: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(who.as_bytes());
    mac.update(b"\n");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Stands for one set of Git credentials, every field of them: a different token, key or
/// CA is a different caller.
pub fn fingerprint(credentials: &GitCredentials) -> String {
    let mut hash = Sha256::new();
    for field in [
        &credentials.access_token,
        &credentials.username,
        &credentials.ssh_private_key,
        &credentials.ssh_passphrase,
        &credentials.ssh_known_hosts,
        &credentials.ca_certificate,
    ] {
        hash.update((field.len() as u64).to_le_bytes());
        hash.update(field.as_bytes());
    }
    hex::encode(hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_holds_for_its_body_credentials_and_process_only() {
        let seal = Seal::new();
        let token = |t: &str| GitCredentials {
            access_token: t.into(),
            ..GitCredentials::default()
        };
        let (alice, bob) = (fingerprint(&token("a")), fingerprint(&token("b")));
        let signed = seal.sign(&alice, "git:h:a.md");
        assert_eq!(signed.len(), SEAL_HEX);
        assert!(seal.verify(&alice, "git:h:a.md", &signed));
        assert!(!seal.verify(&bob, "git:h:a.md", &signed));
        assert!(!seal.verify(&alice, "git:h:b.md", &signed));
        assert!(!Seal::new().verify(&alice, "git:h:a.md", &signed));
        for forged in ["", "zz", &"0".repeat(SEAL_HEX), &signed[..SEAL_HEX - 2]] {
            assert!(!seal.verify(&alice, "git:h:a.md", forged));
        }
        // A key signs for a period and holds for one more; then its ids are not trusted.
        let turning = Seal::with_period(Duration::from_millis(200));
        let early = turning.sign(&alice, "b");
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            turning.verify(&alice, "b", &early),
            "the key before still holds"
        );
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            !turning.verify(&alice, "b", &early),
            "two periods on, it does not"
        );
        // Fields do not run into each other.
        let split = |a: &str, b: &str| GitCredentials {
            access_token: a.into(),
            username: b.into(),
            ..GitCredentials::default()
        };
        assert_ne!(fingerprint(&split("ab", "")), fingerprint(&split("a", "b")));
    }
}
