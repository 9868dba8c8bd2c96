//! Authenticate: verify the bearer token against the tenant's keys (its
//! own, or the host's) and decide whether the caller may use the route.
//! Returns the caller's [`Principal`] (none on a public route); 401 when we
//! cannot tell who is calling, 403 when we can and the answer is no.

pub mod dev;
pub mod jwks;
mod key;
pub mod keyring;
pub mod webhook;

use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

pub use key::KeyError;
pub use keyring::{Keyring, TenantKeyrings};

use super::receive::Routed;
use crate::catalog::RouteTarget;
use crate::config::AuthConfig;
use crate::config::manifest::{AuthRule, NamedRule, WebhookRule};
use crate::problem::Problem;
use crate::store::Configs;
use jwks::{COOLDOWN, JwksClient};

/// Why a request was not allowed through.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 401: no `authorization` header.
    #[error("a bearer token is required")]
    MissingToken,
    /// 401: the header is not `Bearer <token>`.
    #[error("the authorization header must be `Bearer <token>`")]
    NotBearer,
    /// 401: the token could not be verified.
    #[error("the token is not valid: {0}")]
    InvalidToken(&'static str),
    /// 401: no key has the token's `kid` (which is never echoed back).
    #[error("the token is not valid: unknown key id")]
    UnknownKey,
    /// 401: the token is longer than `max_token_bytes`.
    #[error("the token is larger than {0} bytes")]
    TokenTooLarge(usize),
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
    /// 401: a webhook route's signature header is missing.
    #[error("the webhook is not signed: no {0} header")]
    WebhookUnsigned(&'static str),
    /// 401: the webhook's signature does not match its body.
    #[error("the webhook's signature does not match its body")]
    WebhookSignature,
    /// 401: the webhook was signed too long ago (or ahead).
    #[error("the webhook was signed {0} s away from now; at most {1} s is accepted")]
    WebhookStale(u64, u64),
    /// 500: the tenant has not set the secret the route names.
    #[error("the route's webhook secret is not configured")]
    WebhookSecretMissing(String),
}

impl Error {
    /// True for "who are you?" (401); false for "not allowed" (403).
    pub fn is_unauthenticated(&self) -> bool {
        !matches!(
            self,
            Error::WrongTenant | Error::MissingRole(_) | Error::WebhookSecretMissing(_)
        )
    }

    /// The problem the client gets.
    pub fn problem(&self) -> Problem {
        match self {
            Error::WebhookUnsigned(_) | Error::WebhookSignature | Error::WebhookStale(..) => {
                return Problem::new(
                    401,
                    "webhook-unverified",
                    "Webhook not verified",
                    self.to_string(),
                );
            }
            Error::WebhookSecretMissing(_) => {
                return Problem::new(
                    500,
                    "webhook-secret-missing",
                    "Webhook secret missing",
                    "the route's webhook secret is not configured; the tenant's operator must set it",
                );
            }
            _ => {}
        }
        if self.is_unauthenticated() {
            Problem::new(
                401,
                "unauthenticated",
                "Authentication required",
                self.to_string(),
            )
            .with_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
        } else {
            Problem::new(403, "forbidden", "Not allowed", self.to_string())
        }
    }
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

/// Every key the host checks tokens with: its own, each tenant's, and the
/// client that fetches JWKS documents.
pub struct Keys {
    host: Keyring,
    tenants: TenantKeyrings,
    client: JwksClient,
}

impl Keys {
    /// The host's keys from `auth`; no tenant has its own yet.
    pub fn new(auth: &AuthConfig) -> Result<Self, KeyError> {
        Ok(Self {
            host: Keyring::new(auth)?,
            tenants: TenantKeyrings::default(),
            client: JwksClient::new().map_err(KeyError::Client)?,
        })
    }

    /// Sets (or, with `None`, removes) `tenant`'s own keyring.
    pub fn set_tenant(&self, tenant: &str, keyring: Option<Keyring>) {
        self.tenants.set(tenant, keyring);
    }

    /// `tenant`'s own keyring, if it has one.
    pub fn tenant(&self, tenant: &str) -> Option<Arc<Keyring>> {
        self.tenants.get(tenant)
    }

    /// The client that fetches JWKS documents.
    pub fn client(&self) -> &JwksClient {
        &self.client
    }
}

/// The caller of `routed`, as its route's auth rule and its tenant's keys decide.
pub async fn caller(
    keys: &Keys,
    routed: &Routed<'_>,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Error> {
    let target = &routed.target;
    let tenant = &target.function.tenant;
    let own = keys.tenant(tenant);
    let keyring = own.as_deref().unwrap_or(&keys.host);
    check_fetching(keyring, &keys.client, &target.auth, tenant, headers).await
}

/// The sender of a request to a webhook route of `target`, from the
/// signature over `body`, with the secret from the tenant's configuration.
pub fn webhook(
    rule: &WebhookRule,
    target: &RouteTarget,
    configs: &Configs,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Principal, Error> {
    let function = &target.function;
    let config = configs.tenant(&function.tenant);
    let secret = config.get(&function.name, &rule.secret);
    if secret.is_none() {
        tracing::warn!(secret = %rule.secret, "a webhook route's secret is not set: sluice tenant config set … --secret");
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let secret = secret.map(|s| &*s.value);
    webhook::verify(rule, &function.tenant, secret, headers, body, now)
}

/// [`check`], fetching the keyring's JWKS first when it is stale, and again
/// (within the cooldown) when the token names a key id it does not have.
pub async fn check_fetching(
    keyring: &Keyring,
    client: &JwksClient,
    rule: &AuthRule,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<Option<Principal>, Error> {
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
        Err(Error::UnknownKey) if jwks.may_refetch() => {
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
) -> Result<Option<Principal>, Error> {
    if *rule == AuthRule::Named(NamedRule::Public) {
        return Ok(None);
    }
    let header = headers
        .get(http::header::AUTHORIZATION)
        .ok_or(Error::MissingToken)?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Error::NotBearer)?;
    let principal = keyring.caller(token)?;
    if principal.tenant != tenant {
        return Err(Error::WrongTenant);
    }
    if let AuthRule::AnyRole { any_role } = rule
        && !any_role.iter().any(|r| principal.roles.contains(r))
    {
        return Err(Error::MissingRole(any_role.join(", ")));
    }
    Ok(Some(principal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;
    use jsonwebtoken::Algorithm;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A keyring of one HS256 key, with `adjust` applied to its settings.
    fn keyring_with(adjust: impl FnOnce(&mut AuthConfig)) -> Keyring {
        let mut config = AuthConfig {
            keys: vec![KeyConfig {
                kid: None,
                algorithm: "HS256".into(),
                secret: Some(SECRET.into()),
                public_key_file: None,
                public_key_pem: None,
            }],
            ..AuthConfig::default()
        };
        adjust(&mut config);
        Keyring::new(&config).expect("keyring")
    }

    fn keyring() -> Keyring {
        keyring_with(|_| {})
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
            Err(Error::InvalidToken(_))
        ));
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        let keyring = keyring_with(|c| c.leeway_seconds = 0);
        let soon = jsonwebtoken::get_current_timestamp() + 1;
        let h = headers(json!({"sub": "a", "tenant": "t", "exp": soon}));
        let rule = AuthRule::default();
        for _ in 0..2 {
            assert!(
                check(&keyring, &rule, "t", &h).is_ok(),
                "checked, then remembered"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(matches!(
            check(&keyring, &rule, "t", &h),
            Err(Error::Expired)
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

    /// The refusal's detail for `claims` under a keyring that requires an
    /// issuer and an audience.
    fn detail_with_iss_aud(claims: Value) -> String {
        let keyring = keyring_with(|c| {
            c.issuer = Some(vec!["https://issuer.example".into()]);
            c.audience = Some(vec!["sluice".into()]);
        });
        match check(&keyring, &AuthRule::default(), "t", &headers(claims)) {
            Ok(_) => "accepted".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn issuer_and_audience_refusals_say_which() {
        let ok = json!({"sub": "a", "tenant": "t", "exp": exp(),
                        "iss": "https://issuer.example", "aud": "sluice"});
        assert_eq!(detail_with_iss_aud(ok.clone()), "accepted");
        let mut wrong_iss = ok.clone();
        wrong_iss["iss"] = json!("https://other.example");
        assert!(detail_with_iss_aud(wrong_iss).contains("issuer"));
        let mut wrong_aud = ok.clone();
        wrong_aud["aud"] = json!("others");
        assert!(detail_with_iss_aud(wrong_aud).contains("audience"));
        let mut no_iss = ok;
        no_iss.as_object_mut().map(|c| c.remove("iss"));
        assert!(detail_with_iss_aud(no_iss).contains("required claim"));
    }
}
