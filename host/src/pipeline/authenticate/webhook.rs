//! Webhook signatures: an HMAC-SHA256 over the exact bytes the sender
//! signed, with the secret from the tenant's configuration, compared in
//! constant time (ring), and a signed timestamp no further from now than
//! the route's tolerance, so a captured request cannot be replayed later.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use ring::hmac;
use serde_json::{Map, json};

use super::{Error, Principal};
use crate::config::manifest::{WebhookRule, WebhookScheme};

/// What a signed request says about itself.
struct Signed<'a> {
    /// The bytes the signature covers.
    content: Vec<u8>,
    /// The signatures offered (a sender may offer several while it rotates).
    signatures: Vec<Vec<u8>>,
    /// Unix seconds it was signed at, if the scheme signs a time.
    timestamp: Option<i64>,
    /// The sender's id for the delivery, if it gives one.
    id: Option<&'a str>,
}

/// Checks a request to a webhook route of `tenant`: `secret` is the value
/// the rule names (`None` when the tenant has not set it), `now` Unix
/// seconds. The caller it returns is the sender, by scheme.
pub fn verify(
    rule: &WebhookRule,
    tenant: &str,
    secret: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Principal, Error> {
    let secret = secret.ok_or_else(|| Error::WebhookSecretMissing(rule.secret.clone()))?;
    let signed = match rule.scheme {
        WebhookScheme::Standard => standard(headers, body)?,
        WebhookScheme::Stripe => stripe(headers, body)?,
        WebhookScheme::Github => github(headers, body)?,
    };
    let key = match rule.scheme {
        // Standard Webhooks' secrets are base64 after a `whsec_` prefix.
        WebhookScheme::Standard => match secret.strip_prefix("whsec_") {
            Some(encoded) => (STANDARD.decode(encoded))
                .map_err(|_| Error::WebhookSecretMissing(rule.secret.clone()))?,
            None => secret.as_bytes().to_vec(),
        },
        WebhookScheme::Stripe | WebhookScheme::Github => secret.as_bytes().to_vec(),
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key);
    let matches =
        (signed.signatures.iter()).any(|s| hmac::verify(&key, &signed.content, s).is_ok());
    if !matches {
        return Err(Error::WebhookSignature);
    }
    // Checked after the signature, so that an unsigned request learns
    // nothing about the clock.
    if let Some(at) = signed.timestamp {
        let skew = now.abs_diff(at);
        if skew > rule.tolerance_s {
            return Err(Error::WebhookStale(skew, rule.tolerance_s));
        }
    }
    let scheme = rule.scheme.name();
    let subject = format!("webhook:{scheme}");
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(subject));
    claims.insert(
        "webhook".into(),
        json!({ "scheme": scheme, "id": signed.id, "timestamp": signed.timestamp }),
    );
    Ok(Principal {
        subject,
        tenant: tenant.to_owned(),
        roles: Vec::new(),
        claims,
    })
}

/// The value of header `name`, or a refusal naming it.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, Error> {
    (headers.get(name).and_then(|v| v.to_str().ok())).ok_or(Error::WebhookUnsigned(name))
}

fn timestamp(text: &str) -> Result<i64, Error> {
    text.trim().parse().map_err(|_| Error::WebhookSignature)
}

/// `webhook-signature: v1,<base64> v1,<base64>` over `id.timestamp.body`.
fn standard<'h>(headers: &'h HeaderMap, body: &[u8]) -> Result<Signed<'h>, Error> {
    let id = header(headers, "webhook-id")?;
    let at = header(headers, "webhook-timestamp")?;
    let signatures = (header(headers, "webhook-signature")?.split_whitespace())
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .collect();
    Ok(Signed {
        content: [id.as_bytes(), b".", at.as_bytes(), b".", body].concat(),
        signatures,
        timestamp: Some(timestamp(at)?),
        id: Some(id),
    })
}

/// `stripe-signature: t=<timestamp>,v1=<hex>,…` over `timestamp.body`.
fn stripe<'h>(headers: &'h HeaderMap, body: &[u8]) -> Result<Signed<'h>, Error> {
    let value = header(headers, "stripe-signature")?;
    let mut at = None;
    let mut signatures = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => at = Some(t),
            Some(("v1", sig)) => signatures.extend(hex(sig)),
            _ => {}
        }
    }
    let at = at.ok_or(Error::WebhookSignature)?;
    Ok(Signed {
        content: [at.as_bytes(), b".", body].concat(),
        signatures,
        timestamp: Some(timestamp(at)?),
        id: None,
    })
}

/// `x-hub-signature-256: sha256=<hex>` over the body.
fn github<'h>(headers: &'h HeaderMap, body: &[u8]) -> Result<Signed<'h>, Error> {
    let value = header(headers, "x-hub-signature-256")?;
    let signature = (value.strip_prefix("sha256=").and_then(hex)).ok_or(Error::WebhookSignature)?;
    Ok(Signed {
        content: body.to_vec(),
        signatures: vec![signature],
        timestamp: None,
        id: headers
            .get("x-github-delivery")
            .and_then(|v| v.to_str().ok()),
    })
}

/// Lower- or upper-case hex, decoded.
fn hex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// The verified webhook as the function sees it in its claims.
    fn describe(principal: &Principal) -> Option<&Value> {
        principal.claims.get("webhook")
    }

    fn sign(key: &[u8], content: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), content)
            .as_ref()
            .to_vec()
    }

    fn hexed(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn rule(scheme: WebhookScheme) -> WebhookRule {
        WebhookRule {
            scheme,
            secret: "HOOK".into(),
            tolerance_s: 300,
        }
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, value.parse().expect("header"));
        }
        h
    }

    const BODY: &[u8] = br#"{"type":"invoice.paid"}"#;
    const NOW: i64 = 1_764_000_000;

    #[test]
    fn stripe_signatures_are_checked_with_their_timestamp() {
        let secret = "whsec_stripe_test";
        let sig = sign(secret.as_bytes(), format!("{NOW}.{}", "x").as_bytes());
        let wrong = headers(&[("stripe-signature", format!("t={NOW},v1={}", hexed(&sig)))]);
        let rule = rule(WebhookScheme::Stripe);
        assert!(matches!(
            verify(&rule, "t", Some(secret), &wrong, BODY, NOW),
            Err(Error::WebhookSignature)
        ));
        let content = [format!("{NOW}.").as_bytes(), BODY].concat();
        let good = hexed(&sign(secret.as_bytes(), &content));
        let h = headers(&[(
            "stripe-signature",
            format!("t={NOW},v1=00ff,v1={good},v0=abc"),
        )]);
        let who = verify(&rule, "t", Some(secret), &h, BODY, NOW + 10).expect("verified");
        assert_eq!(who.subject, "webhook:stripe");
        assert_eq!(describe(&who).map(|w| &w["scheme"]), Some(&json!("stripe")));
        assert!(matches!(
            verify(&rule, "t", Some(secret), &h, BODY, NOW + 301),
            Err(Error::WebhookStale(301, 300))
        ));
        assert!(matches!(
            verify(&rule, "t", Some("other"), &h, BODY, NOW),
            Err(Error::WebhookSignature)
        ));
        assert!(matches!(
            verify(&rule, "t", None, &h, BODY, NOW),
            Err(Error::WebhookSecretMissing(_))
        ));
    }

    #[test]
    fn standard_webhooks_sign_id_timestamp_and_body_with_a_base64_secret() {
        let key = b"a standard webhooks secret key!!";
        let secret = format!("whsec_{}", STANDARD.encode(key));
        let content = [format!("msg_1.{NOW}.").as_bytes(), BODY].concat();
        let sig = STANDARD.encode(sign(key, &content));
        let h = headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", NOW.to_string()),
            ("webhook-signature", format!("v1,bm90IGl0 v1,{sig}")),
        ]);
        let rule = rule(WebhookScheme::Standard);
        let who = verify(&rule, "t", Some(&secret), &h, BODY, NOW).expect("verified");
        assert_eq!(describe(&who).map(|w| &w["id"]), Some(&json!("msg_1")));
        let tampered = [BODY, b" "].concat();
        assert!(verify(&rule, "t", Some(&secret), &h, &tampered, NOW).is_err());
        let unsigned = headers(&[("webhook-id", "msg_1".into())]);
        assert!(matches!(
            verify(&rule, "t", Some(&secret), &unsigned, BODY, NOW),
            Err(Error::WebhookUnsigned("webhook-timestamp"))
        ));
    }

    #[test]
    fn github_signs_the_body_alone() {
        let secret = "gh-secret";
        let sig = hexed(&sign(secret.as_bytes(), BODY));
        let h = headers(&[
            ("x-hub-signature-256", format!("sha256={sig}")),
            ("x-github-delivery", "d-1".into()),
        ]);
        let rule = rule(WebhookScheme::Github);
        let who = verify(&rule, "t", Some(secret), &h, BODY, NOW).expect("verified");
        assert_eq!(describe(&who).map(|w| &w["id"]), Some(&json!("d-1")));
        let bad = headers(&[("x-hub-signature-256", "sha256=zz".into())]);
        assert!(verify(&rule, "t", Some(secret), &bad, BODY, NOW).is_err());
    }
}
