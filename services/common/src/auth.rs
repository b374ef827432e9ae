//! JWT bearer authentication: HMAC keys selected by `kid` for rotation, the
//! algorithm pinned by configuration (so `none` and algorithm confusion are
//! refused), `exp`, `aud` and `sub` required.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Env};
use crate::problem::Problem;

/// The reference platform's well-known development secret. Services refuse
/// it outside development.
pub const DEV_JWT_SECRET: &str = "change-me-in-production-use-secrets-manager";

/// Shortest secret accepted outside development (HS256 wants 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// JWT settings, from `JWT_SECRET_KEY`, `JWT_ALGORITHM`, `JWT_AUDIENCE` and
/// `JWT_KEYS` (`kid=secret,kid=secret`, for rotation).
#[derive(Clone)]
pub struct JwtConfig {
    /// The key for tokens without a `kid`.
    pub secret: String,
    /// The one accepted algorithm (HS256, HS384 or HS512).
    pub algorithm: Algorithm,
    /// The required `aud` claim.
    pub audience: String,
    /// Additional keys by `kid`.
    pub keys: Vec<(String, String)>,
    /// Clock leeway for `exp` and `nbf`.
    pub leeway_secs: u64,
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("JwtConfig")
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .field("audience", &self.audience)
            .field("kids", &kids)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

impl JwtConfig {
    /// Development settings: the well-known secret, HS256, `event-platform`.
    pub fn for_dev() -> Self {
        Self {
            secret: DEV_JWT_SECRET.to_string(),
            algorithm: Algorithm::HS256,
            audience: "event-platform".into(),
            keys: Vec::new(),
            leeway_secs: 30,
        }
    }

    /// Reads the settings; outside `dev_mode` a missing, well-known or short
    /// secret is an error, so a service never starts guessable.
    pub fn from_env(env: &Env, dev_mode: bool) -> Result<Self, ConfigError> {
        let secret = env.string("JWT_SECRET_KEY", if dev_mode { DEV_JWT_SECRET } else { "" });
        let algorithm = match env.string("JWT_ALGORITHM", "HS256").as_str() {
            "HS256" => Algorithm::HS256,
            "HS384" => Algorithm::HS384,
            "HS512" => Algorithm::HS512,
            other => {
                return Err(ConfigError::invalid(
                    "JWT_ALGORITHM",
                    other,
                    "only HS256, HS384 and HS512 are supported",
                ))
            }
        };
        let mut keys = Vec::new();
        for pair in env
            .string("JWT_KEYS", "")
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let Some((kid, key)) = pair.split_once('=') else {
                return Err(ConfigError::invalid(
                    "JWT_KEYS",
                    "<redacted>",
                    "expected kid=secret,kid=secret",
                ));
            };
            keys.push((kid.trim().to_string(), key.trim().to_string()));
        }
        if !dev_mode {
            for (name, key) in std::iter::once(("JWT_SECRET_KEY", &secret))
                .chain(keys.iter().map(|(_, k)| ("JWT_KEYS", k)))
            {
                if key == DEV_JWT_SECRET {
                    return Err(ConfigError::invalid(name, "<redacted>", "is the well-known development secret; set ENVIRONMENT=development to use it, or generate a secret"));
                }
                if key.len() < MIN_SECRET_BYTES {
                    return Err(ConfigError::invalid(
                        name,
                        "<redacted>",
                        "must be at least 32 bytes outside development",
                    ));
                }
            }
        }
        Ok(Self {
            secret,
            algorithm,
            audience: env.string("JWT_AUDIENCE", "event-platform"),
            keys,
            leeway_secs: env.parse("JWT_LEEWAY_SECS", 30)?,
        })
    }
}

/// The claims the services use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The subject: who sends. Rate limits are per subject.
    // Defaults let the validator report a missing claim by name; it
    // requires both, so the defaults never reach a handler.
    #[serde(default)]
    pub sub: String,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: u64,
}

/// Why a request was not authenticated; always a 401.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("missing Authorization header; send `Authorization: Bearer <token>`")]
    Missing,
    /// A header that is not `Bearer <token>`.
    #[error("malformed Authorization header; expected `Bearer <token>`")]
    MalformedHeader,
    /// A token that failed verification, with the reason.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl From<AuthError> for Problem {
    fn from(err: AuthError) -> Self {
        Problem::unauthorized(err.to_string())
    }
}

/// Verifies bearer tokens against the configured keys.
#[derive(Clone)]
pub struct JwtVerifier {
    algorithm: Algorithm,
    default_key: DecodingKey,
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl JwtVerifier {
    /// A verifier for `config`.
    pub fn new(config: &JwtConfig) -> Self {
        let mut validation = Validation::new(config.algorithm);
        validation.set_audience(&[config.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "aud", "sub"]);
        validation.leeway = config.leeway_secs;
        validation.validate_nbf = true;
        Self {
            algorithm: config.algorithm,
            default_key: DecodingKey::from_secret(config.secret.as_bytes()),
            keys: config
                .keys
                .iter()
                .map(|(kid, k)| (kid.clone(), DecodingKey::from_secret(k.as_bytes())))
                .collect(),
            validation,
        }
    }

    /// Verifies the value of an `Authorization` header.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Claims, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MalformedHeader)?;
        self.verify(token)
    }

    /// Verifies a token: algorithm, key by `kid`, signature, `exp`, `aud`, `sub`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(describe(e.kind())))?;
        if header.alg != self.algorithm {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = match &header.kid {
            Some(kid) => self
                .keys
                .get(kid)
                .ok_or_else(|| AuthError::Invalid(format!("unknown key id `{kid}`")))?,
            None => &self.default_key,
        };
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(describe(e.kind())))
    }
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token has expired".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing required claim `{c}`"),
        ErrorKind::InvalidClaimFormat(c) => format!("claim `{c}` has the wrong format"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => "algorithm is not accepted".into(),
        _ => "not a well-formed JWT".into(),
    }
}

/// Mints a token for `subject` valid for `lifetime`, signed with the default
/// key (or the key of `kid`). Used by `provision token` and tests.
pub fn mint(
    config: &JwtConfig,
    subject: &str,
    lifetime: Duration,
    kid: Option<&str>,
) -> Result<String, AuthError> {
    let secret = match kid {
        Some(kid) => config
            .keys
            .iter()
            .find(|(k, _)| k == kid)
            .map(|(_, s)| s.as_str())
            .ok_or_else(|| AuthError::Invalid(format!("unknown key id `{kid}`")))?,
        None => config.secret.as_str(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = serde_json::json!({
        "sub": subject,
        "aud": config.audience,
        "iat": now,
        "exp": now + lifetime.as_secs(),
    });
    sign(secret.as_bytes(), config.algorithm, kid, &claims)
}

/// Signs arbitrary claims; tests use it to make expired or foreign tokens.
pub fn sign(
    secret: &[u8],
    algorithm: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> Result<String, AuthError> {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .map_err(|e| AuthError::Invalid(format!("cannot sign: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JwtConfig {
        JwtConfig {
            keys: vec![("k2".into(), "second-secret-second-secret-0000".into())],
            ..JwtConfig::for_dev()
        }
    }

    #[test]
    fn minted_token_verifies_with_default_and_rotated_keys() {
        let cfg = config();
        let verifier = JwtVerifier::new(&cfg);
        let t1 = mint(&cfg, "alice", Duration::from_secs(60), None).expect("mint");
        let t2 = mint(&cfg, "bob", Duration::from_secs(60), Some("k2")).expect("mint");
        assert_eq!(verifier.verify(&t1).expect("valid").sub, "alice");
        assert_eq!(
            verifier
                .verify_header(Some(&format!("Bearer {t2}")))
                .expect("valid")
                .sub,
            "bob"
        );
    }

    #[test]
    fn other_algorithm_is_refused_even_with_the_right_key() {
        let cfg = config();
        let claims = serde_json::json!({"sub":"a","aud":"event-platform","exp":u64::MAX / 2});
        let token = sign(cfg.secret.as_bytes(), Algorithm::HS512, None, &claims).expect("sign");
        let err = JwtVerifier::new(&cfg).verify(&token).expect_err("refused");
        assert_eq!(
            err,
            AuthError::Invalid("algorithm HS512 is not accepted".into())
        );
    }

    #[test]
    fn production_refuses_the_development_secret() {
        let env = Env::from_pairs([("JWT_SECRET_KEY", DEV_JWT_SECRET)]);
        let err = JwtConfig::from_env(&env, false).expect_err("refused");
        assert!(
            err.to_string().contains("well-known development secret"),
            "{err}"
        );
        let env = Env::from_pairs([("JWT_SECRET_KEY", "short")]);
        assert!(JwtConfig::from_env(&env, false).is_err());
        assert!(JwtConfig::from_env(&Env::default(), true).is_ok());
    }
}
