//! One verification key: its material, and the checks a token signed with
//! it must pass.

use std::str::FromStr;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{AuthConfig, KeyConfig};

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
    /// The HTTPS client for JWKS documents could not be set up.
    #[error("{0}")]
    Client(String),
}

/// A verification key and the checks a token signed with it must pass.
pub(super) struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub validation: Validation,
}

impl Key {
    /// Builds key `index` of `config`; its `Validation` allows only its own algorithm.
    pub(super) fn new(index: usize, k: &KeyConfig, config: &AuthConfig) -> Result<Self, KeyError> {
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
        Ok(Self {
            kid: k.kid.clone(),
            key,
            validation: validation(algorithm, config),
        })
    }
}

/// The rules every key's signature check applies: the key's algorithm only,
/// `exp` and `sub` required, `nbf`, issuer and audience as configured.
pub(super) fn validation(algorithm: Algorithm, config: &AuthConfig) -> Validation {
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
