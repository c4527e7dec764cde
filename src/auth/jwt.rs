//! Open WebUI session JWTs verified locally: HS256 only, with `exp` required and enforced.
//! Open WebUI revokes tokens on its side (`session_stamp`, sign-out); a signature check cannot
//! see that before `exp`, which is why leaving the secret unset sends JWTs to introspection.
//!
//! A browser sends the same token with every request, so tokens that verified are remembered
//! by their SHA-256 until their `exp`: a repeat costs a hash and a lookup instead of base64,
//! HMAC and JSON (about 4 µs, see BENCHMARKS.md).

use super::keys::Hash;
use super::Failure;
use crate::identity::{Identity, Source};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use moka::sync::Cache;
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Verified tokens remembered; past this, the least useful are forgotten (and re-verified).
const CACHE_SIZE: u64 = 50_000;

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: Cache<Hash, Verified>,
}

#[derive(Clone)]
struct Verified {
    identity: Identity,
    exp: u64,
}

/// Entries leave the cache when their token expires.
struct UntilExp;

impl moka::Expiry<Hash, Verified> for UntilExp {
    fn expire_after_create(&self, _: &Hash, v: &Verified, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(v.exp.saturating_sub(unix_now())))
    }
}

#[derive(Deserialize)]
struct Claims {
    /// Open WebUI's user id.
    id: String,
    exp: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    pub fn new(secret: &str) -> Self {
        // Only HS256: a token naming "none", RS256 or anything else never verifies.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.leeway = 0;
        validation.validate_aud = false;
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            verified: Cache::builder()
                .max_capacity(CACHE_SIZE)
                .expire_after(UntilExp)
                .build(),
        }
    }

    /// `hash` is the token's SHA-256.
    pub fn verify(&self, token: &str, hash: &Hash) -> Result<Identity, Failure> {
        if let Some(v) = self.verified.get(hash) {
            if unix_now() < v.exp {
                return Ok(v.identity);
            }
            self.verified.invalidate(hash);
            return Err(Failure::Expired);
        }
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) if !data.claims.id.is_empty() => {
                let identity = Identity {
                    id: format!("user:{}", data.claims.id).into(),
                    source: Source::Jwt,
                    role: None,
                    models: None,
                    limits: None,
                };
                let exp = data.claims.exp;
                self.verified.insert(
                    *hash,
                    Verified {
                        identity: identity.clone(),
                        exp,
                    },
                );
                Ok(identity)
            }
            Ok(_) => Err(Failure::Invalid),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(Failure::Expired),
            Err(_) => Err(Failure::Invalid),
        }
    }
}

/// Three dot-separated parts: what Open WebUI would try to decode as a JWT. The parts' alphabet
/// is left to the verifier; this only routes the token to it.
pub fn is_jwt_shaped(token: &str) -> bool {
    memchr::memchr_iter(b'.', token.as_bytes()).count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use std::time::{SystemTime, UNIX_EPOCH};

    const SECRET: &str = "0123456789abcdef0123";

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn token(alg: Algorithm, secret: &str, claims: serde_json::Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn hs256_with_exp_only() {
        let v = JwtVerifier::new(SECRET);
        let verify = |t: &str| v.verify(t, &super::super::keys::sha256(t));
        let good = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(is_jwt_shaped(&good));
        assert_eq!(&*verify(&good).unwrap().id, "user:u1");
        assert_eq!(
            &*verify(&good).unwrap().id,
            "user:u1",
            "again, from the cache"
        );
        let expired = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() - 1}),
        );
        assert!(matches!(verify(&expired), Err(Failure::Expired)));
        let no_exp = token(Algorithm::HS256, SECRET, serde_json::json!({"id": "u1"}));
        assert!(matches!(verify(&no_exp), Err(Failure::Invalid)));
        let wrong = token(
            Algorithm::HS256,
            "another-secret-entirely",
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(matches!(verify(&wrong), Err(Failure::Invalid)));
        let hs512 = token(
            Algorithm::HS512,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(matches!(verify(&hs512), Err(Failure::Invalid)));
        // alg "none": header and claims with an empty signature.
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"id":"u1","exp":{}}}"#, now() + 60))
        );
        assert!(matches!(verify(&none), Err(Failure::Invalid)));
    }

    #[test]
    fn remembered_tokens_still_expire() {
        let v = JwtVerifier::new(SECRET);
        let t = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() + 1}),
        );
        let hash = super::super::keys::sha256(&t);
        assert!(v.verify(&t, &hash).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(matches!(v.verify(&t, &hash), Err(Failure::Expired)));
    }
}
