//! llmgate's own keys: only their SHA-256 is held, looked up by hash and compared in constant
//! time, so neither the key nor the timing of a comparison says anything about a stored key.

use crate::config::KeyEntry;
use crate::identity::{Identity, Source};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub type Hash = [u8; 32];

/// The prefix of every key `llmgate keys new` makes; such credentials are never sent to an
/// upstream for introspection.
pub const PREFIX: &str = "lg-";

#[derive(Default)]
pub struct KeyStore {
    /// Bucketed by the first 8 bytes of the hash; the full hash is compared in constant time.
    buckets: HashMap<u64, Vec<(Hash, Identity)>>,
    len: usize,
}

impl KeyStore {
    /// Builds the store from validated entries.
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a KeyEntry>) -> Self {
        let mut store = Self::default();
        for e in entries {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(e.sha256.get_ref(), &mut hash)
                .expect("validated by config: 64 hex digits");
            let models = e.models.as_ref().map(|globs| {
                let mut set = globset::GlobSetBuilder::new();
                for g in globs {
                    set.add(globset::Glob::new(g).expect("validated by config"));
                }
                Arc::new(set.build().expect("validated globs build"))
            });
            let identity = Identity {
                id: e.id.get_ref().as_str().into(),
                source: Source::Key,
                role: e.role.as_deref().map(Into::into),
                models,
                limits: e.limits(),
            };
            store
                .buckets
                .entry(bucket(&hash))
                .or_default()
                .push((hash, identity));
            store.len += 1;
        }
        store
    }

    pub fn get(&self, hash: &Hash) -> Option<&Identity> {
        self.buckets
            .get(&bucket(hash))?
            .iter()
            .find(|(h, _)| bool::from(h.ct_eq(hash)))
            .map(|(_, id)| id)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn bucket(hash: &Hash) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// Key ids: 1-64 letters, digits, '.', '_' or '-'. No ':', which marks Open WebUI users.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

pub fn sha256(credential: &str) -> Hash {
    Sha256::digest(credential.as_bytes()).into()
}

/// A fresh key: the prefix and 256 random bits from the OS generator, as hex.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator is available");
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// The `[[keys]]` entry for `key`, ready to paste into the keys file.
pub fn entry(id: &str, key: &str) -> String {
    format!(
        "[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\n",
        hex::encode(sha256(key))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_hash_only() {
        let key = generate();
        assert!(key.starts_with(PREFIX) && key.len() == 3 + 64);
        assert_ne!(key, generate());
        let file: crate::config::KeysFile = toml::from_str(&entry("team-a", &key)).unwrap();
        let store = KeyStore::new(&file.keys);
        assert_eq!(&*store.get(&sha256(&key)).unwrap().id, "team-a");
        assert!(store.get(&sha256("lg-other")).is_none());
        assert_eq!(store.len(), 1);
    }
}
