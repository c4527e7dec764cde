//! Open WebUI session JWTs verified locally: HS256 only, with `exp` required and enforced.
//! Open WebUI revokes tokens on its side (`session_stamp`, sign-out); a signature check cannot
//! see that before `exp`, which is why leaving the secret unset sends JWTs to introspection.

use super::Failure;
use crate::identity::{Identity, Source};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

#[derive(Deserialize)]
struct Claims {
    /// Open WebUI's user id.
    id: String,
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
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, Failure> {
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) if !data.claims.id.is_empty() => Ok(Identity {
                id: format!("user:{}", data.claims.id).into(),
                source: Source::Jwt,
                role: None,
                models: None,
            }),
            Ok(_) => Err(Failure::Invalid),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(Failure::Expired),
            Err(_) => Err(Failure::Invalid),
        }
    }
}

/// Three dot-separated base64url parts: what Open WebUI would try to decode as a JWT.
pub fn is_jwt_shaped(token: &str) -> bool {
    token.split('.').count() == 3
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
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
        let good = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(is_jwt_shaped(&good));
        assert_eq!(&*v.verify(&good).unwrap().id, "user:u1");
        let expired = token(
            Algorithm::HS256,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() - 1}),
        );
        assert!(matches!(v.verify(&expired), Err(Failure::Expired)));
        let no_exp = token(Algorithm::HS256, SECRET, serde_json::json!({"id": "u1"}));
        assert!(matches!(v.verify(&no_exp), Err(Failure::Invalid)));
        let wrong = token(
            Algorithm::HS256,
            "another-secret-entirely",
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(matches!(v.verify(&wrong), Err(Failure::Invalid)));
        let hs512 = token(
            Algorithm::HS512,
            SECRET,
            serde_json::json!({"id": "u1", "exp": now() + 60}),
        );
        assert!(matches!(v.verify(&hs512), Err(Failure::Invalid)));
        // alg "none": header and claims with an empty signature.
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let none = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(r#"{{"id":"u1","exp":{}}}"#, now() + 60))
        );
        assert!(matches!(v.verify(&none), Err(Failure::Invalid)));
    }
}
