//! Authenticate: verify the bearer token against the configured keys and
//! decide whether the caller may use the route. Returns the caller's
//! [`Principal`] (none on a public route); 401 when we cannot tell who is
//! calling, 403 when we can and the answer is no.

pub mod jwks;

use std::str::FromStr;
use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::config::{AuthConfig, KeyConfig};
use crate::manifest::{AuthRule, NamedRule};
use jwks::{COOLDOWN, Jwks, JwksClient};

/// Why a request was not allowed through.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// 401: no `authorization` header.
    #[error("a bearer token is required")]
    MissingToken,
    /// 401: the header is not `Bearer <token>`.
    #[error("the authorization header must be `Bearer <token>`")]
    NotBearer,
    /// 401: the token could not be verified.
    #[error("the token is not valid: {0}")]
    InvalidToken(&'static str),
    /// 401: no key has the token's `kid`.
    #[error("the token is not valid: unknown key id")]
    UnknownKey,
    /// 401: past `exp`.
    #[error("the token has expired")]
    Expired,
    /// 401: before `nbf`.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// 403: the token belongs to another tenant.
    #[error("the token is not for this tenant")]
    WrongTenant,
    /// 403: none of the roles the route requires.
    #[error("this route requires one of the roles: {0}")]
    MissingRole(String),
}

impl AuthError {
    /// True for "who are you?" (401); false for "not allowed" (403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(self, AuthError::WrongTenant | AuthError::MissingRole(_))
    }
}

/// Why the configured keys are unusable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unknown algorithm name.
    #[error("key {index}: unknown algorithm {name:?}")]
    Algorithm {
        /// Position in `[[auth.keys]]`.
        index: usize,
        /// The name given.
        name: String,
    },
    /// Missing or unreadable key material.
    #[error("key {index}: {message}")]
    Material {
        /// Position in `[[auth.keys]]`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// The tenant claim.
    pub tenant: String,
    /// The roles claim.
    pub roles: Vec<String>,
    /// Every claim.
    pub claims: Map<String, Value>,
}

/// A verification key and the checks a token signed with it must pass.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
    validation: Validation,
}

/// The verification keys and claim rules.
pub struct Keyring {
    keys: Vec<Key>,
    jwks: Option<Arc<Jwks>>,
    tenant_claim: String,
    roles_claim: String,
    /// The settings it was built from (JSON), so a node re-applying the
    /// same settings keeps it and its fetched JWKS.
    source: String,
}

impl Keyring {
    /// Builds the keyring. Each key's `Validation` allows only that key's algorithm.
    pub fn new(config: &AuthConfig) -> Result<Self, KeyError> {
        let keys = config
            .keys
            .iter()
            .enumerate()
            .map(|(index, k)| Self::key(index, k, config))
            .collect::<Result<_, _>>()?;
        let jwks = match &config.jwks_url {
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                Some(Arc::new(Jwks::new(url, config)))
            }
            Some(url) => {
                return Err(KeyError::Material {
                    index: 0,
                    message: format!("jwks_url {url:?} must be an https:// (or http://) URL"),
                });
            }
            None => None,
        };
        Ok(Self {
            keys,
            jwks,
            tenant_claim: config.tenant_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            source: source(config),
        })
    }

    /// Whether it was built from `config`.
    pub fn built_from(&self, config: &AuthConfig) -> bool {
        self.source == source(config)
    }

    /// A keyring that verifies nothing: every token is refused.
    pub fn empty(config: &AuthConfig) -> Self {
        Self {
            keys: Vec::new(),
            jwks: None,
            tenant_claim: config.tenant_claim.clone(),
            roles_claim: config.roles_claim.clone(),
            source: source(config),
        }
    }

    /// The JWKS this keyring takes keys from, if any.
    pub fn jwks(&self) -> Option<&Jwks> {
        self.jwks.as_deref()
    }

    fn key(index: usize, k: &KeyConfig, config: &AuthConfig) -> Result<Key, KeyError> {
        let algorithm = Algorithm::from_str(&k.algorithm).map_err(|_| KeyError::Algorithm {
            index,
            name: k.algorithm.clone(),
        })?;
        let material = |message: String| KeyError::Material { index, message };
        let key = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                let secret = k
                    .secret
                    .as_deref()
                    .ok_or_else(|| material("an HS* key needs `secret`".into()))?;
                if secret.len() < 32 {
                    return Err(material("an HS* secret must be at least 32 bytes".into()));
                }
                DecodingKey::from_secret(secret.as_bytes())
            }
            _ => {
                let (pem, source) = match (&k.public_key_pem, &k.public_key_file) {
                    (Some(pem), _) => (pem.clone().into_bytes(), "public_key_pem".to_owned()),
                    (None, Some(path)) => (
                        std::fs::read(path).map_err(|e| {
                            material(format!("cannot read {}: {e}", path.display()))
                        })?,
                        path.display().to_string(),
                    ),
                    (None, None) => {
                        return Err(material(format!(
                            "a {algorithm:?} key needs `public_key_pem` or `public_key_file`"
                        )));
                    }
                };
                let parsed = match algorithm {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                    _ => DecodingKey::from_rsa_pem(&pem),
                };
                parsed.map_err(|e| material(format!("{source}: {e}")))?
            }
        };
        Ok(Key {
            kid: k.kid.clone(),
            key,
            validation: validation(algorithm, config),
        })
    }

    /// Verifies `token` and returns its claims.
    fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::InvalidToken("malformed"))?;
        let kid_fits = |kid: &Option<String>| match (&header.kid, kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        let published = self.jwks.as_ref().map(|j| j.keys());
        let mut candidates = self
            .keys
            .iter()
            .chain(published.iter().flat_map(|keys| keys.iter()))
            .filter(|k| kid_fits(&k.kid))
            .peekable();
        if candidates.peek().is_none() {
            return Err(AuthError::UnknownKey);
        }
        let mut last = AuthError::InvalidToken("bad signature");
        for key in candidates {
            use jsonwebtoken::errors::ErrorKind;
            match decode::<Map<String, Value>>(token, &key.key, &key.validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => return Err(AuthError::Expired),
                        ErrorKind::ImmatureSignature => return Err(AuthError::NotYetValid),
                        ErrorKind::InvalidIssuer => AuthError::InvalidToken("wrong issuer"),
                        ErrorKind::InvalidAudience => AuthError::InvalidToken("wrong audience"),
                        ErrorKind::MissingRequiredClaim(_) => {
                            AuthError::InvalidToken("a required claim is missing")
                        }
                        ErrorKind::InvalidAlgorithm => {
                            AuthError::InvalidToken("algorithm does not match the key")
                        }
                        _ => AuthError::InvalidToken("bad signature"),
                    }
                }
            }
        }
        Err(last)
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<Principal, AuthError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(AuthError::InvalidToken("`sub` must be a string"))?
            .to_owned();
        let tenant = claims
            .get(&self.tenant_claim)
            .and_then(Value::as_str)
            .ok_or(AuthError::WrongTenant)?
            .to_owned();
        let roles = match claims.get(&self.roles_claim) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            subject,
            tenant,
            roles,
            claims,
        })
    }
}

/// The rules every key's signature check applies: the key's algorithm only,
/// `exp` and `sub` required, `nbf`, issuer and audience as configured.
fn validation(algorithm: Algorithm, config: &AuthConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = config.leeway_seconds;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    if let Some(iss) = &config.issuer {
        validation.set_issuer(iss);
        validation.required_spec_claims.insert("iss".into());
    }
    if let Some(aud) = &config.audience {
        validation.set_audience(aud);
        validation.validate_aud = true;
        validation.required_spec_claims.insert("aud".into());
    }
    validation
}

fn source(config: &AuthConfig) -> String {
    serde_json::to_string(config).unwrap_or_default()
}

/// The keyrings of tenants with their own auth settings; the others use the host's.
#[derive(Default)]
pub struct TenantKeyrings {
    tenants: std::sync::RwLock<std::collections::HashMap<String, Arc<Keyring>>>,
}

impl TenantKeyrings {
    /// Sets (or, with `None`, removes) `tenant`'s own keyring.
    pub fn set(&self, tenant: &str, keyring: Option<Keyring>) {
        let mut map = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        match keyring {
            Some(k) => map.insert(tenant.to_owned(), Arc::new(k)),
            None => map.remove(tenant),
        };
    }

    /// `tenant`'s own keyring, if it has one.
    pub fn get(&self, tenant: &str) -> Option<Arc<Keyring>> {
        let map = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        map.get(tenant).cloned()
    }
}

/// [`check`], fetching the keyring's JWKS first when it is stale, and again
/// (within the cooldown) when the token names a key id it does not have.
pub async fn check_fetching(
    keyring: &Keyring,
    client: &JwksClient,
    rule: &AuthRule,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Option<Principal>, AuthError> {
    let Some(jwks) = keyring
        .jwks()
        .filter(|_| *rule != AuthRule::Named(NamedRule::Public))
    else {
        return check(keyring, rule, tenant, headers);
    };
    if jwks.is_stale() {
        // A failure keeps whatever keys we had; the check below decides.
        let _ = jwks.refresh(client, COOLDOWN).await;
    }
    match check(keyring, rule, tenant, headers) {
        Err(AuthError::UnknownKey) if jwks.may_refetch() => {
            let _ = jwks.refresh(client, COOLDOWN).await;
            check(keyring, rule, tenant, headers)
        }
        other => other,
    }
}

/// Applies `rule` for a function of `tenant` to a request with `headers`.
pub fn check(
    keyring: &Keyring,
    rule: &AuthRule,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Option<Principal>, AuthError> {
    if *rule == AuthRule::Named(NamedRule::Public) {
        return Ok(None);
    }
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(AuthError::MissingToken)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::NotBearer)?;
    let principal = keyring.principal(keyring.verify(token)?)?;
    if principal.tenant != tenant {
        return Err(AuthError::WrongTenant);
    }
    if let AuthRule::AnyRole { any_role } = rule
        && !any_role.iter().any(|r| principal.roles.contains(r))
    {
        return Err(AuthError::MissingRole(any_role.join(", ")));
    }
    Ok(Some(principal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn keyring() -> Keyring {
        Keyring::new(&AuthConfig {
            keys: vec![KeyConfig {
                kid: None,
                algorithm: "HS256".into(),
                secret: Some(SECRET.into()),
                public_key_file: None,
                public_key_pem: None,
            }],
            ..AuthConfig::default()
        })
        .expect("keyring")
    }

    fn headers(claims: Value) -> HeaderMap {
        let token = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("encode");
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        h
    }

    fn exp() -> u64 {
        jsonwebtoken::get_current_timestamp() + 600
    }

    #[test]
    fn roles_rule_distinguishes_403_from_401() {
        let rule = AuthRule::AnyRole {
            any_role: vec!["admin".into()],
        };
        let ok = headers(json!({"sub": "a", "tenant": "t", "roles": ["admin"], "exp": exp()}));
        assert!(check(&keyring(), &rule, "t", &ok).is_ok());
        let member = headers(json!({"sub": "a", "tenant": "t", "roles": "member", "exp": exp()}));
        let err = check(&keyring(), &rule, "t", &member).expect_err("403");
        assert!(!err.is_unauthenticated());
        let err = check(&keyring(), &rule, "t", &HeaderMap::new()).expect_err("401");
        assert!(err.is_unauthenticated());
    }

    #[test]
    fn token_without_exp_is_refused() {
        let h = headers(json!({"sub": "a", "tenant": "t"}));
        let rule = AuthRule::default();
        assert!(matches!(
            check(&keyring(), &rule, "t", &h),
            Err(AuthError::InvalidToken(_))
        ));
    }

    #[test]
    fn short_hs_secret_is_refused() {
        let config = AuthConfig {
            keys: vec![KeyConfig {
                kid: None,
                algorithm: "HS256".into(),
                secret: Some("short".into()),
                public_key_file: None,
                public_key_pem: None,
            }],
            ..AuthConfig::default()
        };
        assert!(Keyring::new(&config).is_err());
    }
}
