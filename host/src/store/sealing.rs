//! Sealing secrets at rest: ChaCha20-Poly1305 (ring) under the host's key,
//! each value with a fresh random nonce and bound to where it is stored
//! (tenant, function, name), so a sealed value copied to another row does
//! not open. A sealed value names the key that sealed it, so a host can
//! hold the previous keys while a new one takes over.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};

/// The prefix of every sealed value: the format's version.
const VERSION: &str = "v1";

/// Why a key or a sealed value is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A configured key is not 32 bytes of standard base64.
    #[error(
        "a secrets key must be 32 random bytes in base64 (`sluice secrets new-key` makes one); \
         this one is {0}"
    )]
    BadKey(&'static str),
    /// No key is configured, so no secret can be set or read.
    #[error(
        "this host has no secrets key: set `[secrets] key` in its configuration or \
         SLUICE_SECRETS_KEY"
    )]
    NoKey,
    /// The value was sealed with a key this host does not hold.
    #[error("sealed with key {0}, which this host does not hold")]
    UnknownKey(String),
    /// The value is not one this host sealed, or it was altered.
    #[error("the sealed value is damaged or was moved from another row")]
    Damaged,
}

/// One key and its id (the first 8 hex digits of its SHA-256).
struct Key {
    id: String,
    key: LessSafeKey,
}

impl Key {
    fn parse(text: &str) -> Result<Self, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadKey("not base64"))?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey("not 32 bytes long"));
        }
        let id = Sha256::digest(&bytes)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&CHACHA20_POLY1305, &bytes)
            .map_err(|_| SealError::BadKey("refused by the cipher"))?;
        Ok(Self {
            id,
            key: LessSafeKey::new(key),
        })
    }
}

/// The keys a host seals and opens secrets with: the current one, and
/// earlier ones it still opens (during a rotation).
#[derive(Default)]
pub struct SecretKeys {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl SecretKeys {
    /// The keys from their base64 texts.
    pub fn new(current: Option<&str>, previous: &[String]) -> Result<Self, SealError> {
        Ok(Self {
            current: current.map(Key::parse).transpose()?,
            previous: previous
                .iter()
                .map(|k| Key::parse(k))
                .collect::<Result<_, _>>()?,
        })
    }

    /// A fresh random key, in the form the configuration takes.
    pub fn generate() -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The current key's id, if there is a key.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// `plain` sealed with the current key for the row `place` names.
    pub fn seal(&self, plain: &str, place: &[&str]) -> Result<String, SealError> {
        let key = self.current.as_ref().ok_or(SealError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::NoKey)?;
        let mut sealed = plain.as_bytes().to_vec();
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(place)),
                &mut sealed,
            )
            .map_err(|_| SealError::Damaged)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(out)
        ))
    }

    /// The id of the key that sealed `sealed`.
    pub fn key_of(sealed: &str) -> Option<&str> {
        let mut parts = sealed.splitn(3, '.');
        (parts.next() == Some(VERSION))
            .then(|| parts.next())
            .flatten()
    }

    /// Opens `sealed`, which was sealed for the row `place` names.
    pub fn open(&self, sealed: &str, place: &[&str]) -> Result<String, SealError> {
        let mut parts = sealed.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SealError::Damaged);
        };
        let key = (self.current.iter().chain(&self.previous))
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut sealed = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(aad(place)), &mut sealed)
            .map_err(|_| SealError::Damaged)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Damaged)
    }
}

/// The associated data binding a sealed value to its row.
fn aad(place: &[&str]) -> Vec<u8> {
    place.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> String {
        SecretKeys::generate().expect("randomness")
    }

    #[test]
    fn sealed_values_open_only_in_their_place_and_under_their_key() {
        let (k1, k2) = (key(), key());
        let keys = SecretKeys::new(Some(&k1), &[]).expect("key");
        let sealed = keys
            .seal("sk_live_1", &["acme", "", "STRIPE"])
            .expect("seal");
        assert!(!sealed.contains("sk_live_1"));
        assert_eq!(SecretKeys::key_of(&sealed), keys.current_id());
        assert_eq!(
            keys.open(&sealed, &["acme", "", "STRIPE"]).as_deref(),
            Ok("sk_live_1")
        );
        assert_eq!(
            keys.open(&sealed, &["other", "", "STRIPE"]),
            Err(SealError::Damaged)
        );
        // A new key with the old one kept opens both; without it, not.
        let rotated = SecretKeys::new(Some(&k2), std::slice::from_ref(&k1)).expect("keys");
        assert_eq!(
            rotated.open(&sealed, &["acme", "", "STRIPE"]).as_deref(),
            Ok("sk_live_1")
        );
        let only_new = SecretKeys::new(Some(&k2), &[]).expect("key");
        assert!(matches!(
            only_new.open(&sealed, &["acme", "", "STRIPE"]),
            Err(SealError::UnknownKey(_))
        ));
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.open(&tampered, &["acme", "", "STRIPE"]).is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert_eq!(
            SecretKeys::new(Some("not base64!"), &[]).err(),
            Some(SealError::BadKey("not base64"))
        );
        assert_eq!(
            SecretKeys::new(Some("c2hvcnQ="), &[]).err(),
            Some(SealError::BadKey("not 32 bytes long"))
        );
        assert_eq!(SecretKeys::default().seal("x", &[]), Err(SealError::NoKey));
    }
}
