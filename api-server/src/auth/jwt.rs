//! Access tokens: HS256 JWTs that live 15 minutes and carry only the user id and the
//! user's token generation (bumped by "sign out everywhere", which makes every access token
//! issued before fail).
//!
//! Verification pins the algorithm to HS256 (so neither `none` nor a public-key algorithm
//! is ever accepted) and requires `sub`, `exp`, `iss` and `aud`, with a small leeway for
//! clock skew between replicas.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Allowed clock skew, in seconds, for `exp` and `iat`.
pub const LEEWAY_SECS: u64 = 30;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    pub iss: String,
    pub aud: String,
    /// The user's token generation when the token was issued; tokens from before this
    /// claim existed count as generation 0.
    #[serde(default)]
    pub r#gen: i64,
}

/// A presented access token was not accepted. Deliberately without detail: the client
/// learns only that it must sign in again.
#[derive(Debug, thiserror::Error)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(String);

/// Issues and verifies access tokens with one HMAC key.
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl AccessTokens {
    pub fn new(secret: &SecretString, issuer: &str, audience: &str, ttl: Duration) -> Self {
        let key = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_aud = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    /// How long an issued token is valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for `user_id` at token `generation`, valid from `now` for
    /// [`ttl`](Self::ttl).
    pub fn issue(
        &self,
        user_id: Uuid,
        generation: i64,
        now: DateTime<Utc>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user_id,
            iat: now.timestamp(),
            exp: now.timestamp().saturating_add(ttl),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            r#gen: generation,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a valid token: right key, HS256, our issuer and audience, not expired,
    /// not issued in the future.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| InvalidToken(e.to_string()))?;
        let claims = data.claims;
        // The library checks `exp` against the system clock; check both against `now` too,
        // so callers (and tests) that pass a time get a consistent answer.
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        if claims.exp < now.timestamp() - leeway {
            return Err(InvalidToken("expired".into()));
        }
        if claims.iat > now.timestamp() + leeway {
            return Err(InvalidToken("issued in the future".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> AccessTokens {
        AccessTokens::new(
            &SecretString::from("k".repeat(32)),
            "quire",
            "quire-api",
            Duration::from_secs(900),
        )
    }

    #[test]
    fn an_issued_token_verifies_to_its_user() {
        let user = Uuid::now_v7();
        let now = Utc::now();
        let token = tokens().issue(user, 0, now).unwrap();
        let claims = tokens().verify(&token, now).unwrap();
        assert_eq!(claims.sub, user);
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn expired_tokens_and_other_keys_are_rejected() {
        let now = Utc::now();
        let old = tokens()
            .issue(Uuid::now_v7(), 0, now - chrono::Duration::hours(1))
            .unwrap();
        assert!(tokens().verify(&old, now).is_err());

        let other = AccessTokens::new(
            &SecretString::from("x".repeat(32)),
            "quire",
            "quire-api",
            Duration::from_secs(900),
        );
        let forged = other.issue(Uuid::now_v7(), 0, now).unwrap();
        assert!(tokens().verify(&forged, now).is_err());
    }

    #[test]
    fn other_issuers_and_audiences_are_rejected() {
        let now = Utc::now();
        let secret = SecretString::from("k".repeat(32));
        let ttl = Duration::from_secs(900);
        for (iss, aud) in [("someone-else", "quire-api"), ("quire", "another-api")] {
            let token = AccessTokens::new(&secret, iss, aud, ttl)
                .issue(Uuid::now_v7(), 0, now)
                .unwrap();
            assert!(
                tokens().verify(&token, now).is_err(),
                "{iss}/{aud} accepted"
            );
        }
    }
}
