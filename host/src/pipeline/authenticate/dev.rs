//! The development signing key and `sluice token`: for trying Sluice out,
//! never for production (configure `[[auth.keys]]` there).

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Map, Value, json};

use crate::config::{AuthConfig, Config, KeyConfig};

/// The key id of the development key.
pub const DEV_KID: &str = "sluice-dev";

/// Where the development key lives inside a data directory.
pub fn dev_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-signing-key")
}

/// Reads the development HS256 secret, creating a random one on first use.
pub fn dev_secret(data_dir: &Path) -> std::io::Result<String> {
    crate::config::key_file(
        &dev_key_path(data_dir),
        |secret| secret.len() >= 32,
        || {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
        },
    )
}

/// What goes into a development token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `sub`.
    pub subject: String,
    /// The tenant claim's value.
    pub tenant: String,
    /// The roles claim's value.
    pub roles: Vec<String>,
    /// Lifetime in seconds.
    pub ttl_seconds: u64,
    /// Further claims.
    pub extra: Map<String, Value>,
}

/// Signs an HS256 token with `secret`, using the configured claim names.
pub fn mint(
    secret: &str,
    kid: Option<&str>,
    tenant_claim: &str,
    roles_claim: &str,
    request: &TokenRequest,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = request.extra.clone();
    claims.insert("sub".into(), json!(request.subject));
    claims.insert(tenant_claim.into(), json!(request.tenant));
    claims.insert(roles_claim.into(), json!(request.roles));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + request.ttl_seconds));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
}

/// The configured keys, or the development key when none are configured.
pub fn effective_auth(config: &Config) -> std::io::Result<AuthConfig> {
    let mut auth = config.auth.clone();
    if auth.keys.is_empty() && auth.jwks_url.is_none() {
        let secret = dev_secret(&config.data_dir)?;
        tracing::warn!(
            key = %dev_key_path(&config.data_dir).display(),
            "no [[auth.keys]] configured: accepting tokens signed with the DEVELOPMENT key \
             (mint one with `sluice token`); configure real keys before exposing this host"
        );
        auth.keys.push(KeyConfig {
            kid: Some(DEV_KID.to_owned()),
            algorithm: "HS256".to_owned(),
            secret: Some(secret),
            public_key_file: None,
            public_key_pem: None,
        });
    }
    Ok(auth)
}
