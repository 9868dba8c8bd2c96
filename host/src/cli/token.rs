//! `sluice token`: a JWT signed with the development key (or the
//! configured HS* key), for trying a host out.

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};
use sluice_host::Config;
use sluice_host::pipeline::authenticate::dev;

/// What goes into the token.
#[derive(clap::Args)]
pub struct Args {
    /// The `sub` claim: who the caller is.
    #[arg(long)]
    sub: String,
    /// The tenant claim.
    #[arg(long)]
    tenant: String,
    /// A role; repeat for several.
    #[arg(long = "role")]
    roles: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// An extra claim as NAME=JSON (or NAME=text); repeat for several.
    #[arg(long = "claim", value_parser = parse_claim)]
    claims: Vec<(String, Value)>,
}

/// Prints the token.
pub fn run(config: &Config, args: Args) -> Result<()> {
    let request = dev::TokenRequest {
        subject: args.sub,
        tenant: args.tenant,
        roles: args.roles,
        ttl_seconds: args.ttl,
        extra: args.claims.into_iter().collect::<Map<_, _>>(),
    };
    let Some(token) = sign(config, request)? else {
        bail!("`sluice token` signs with an HS256 key that has a secret; none is configured");
    };
    println!("{token}");
    Ok(())
}

/// `request` signed with the host's HS key (the development key unless
/// `[auth]` names others); `None` if the host has no HS key with a secret.
pub(super) fn sign(config: &Config, mut request: dev::TokenRequest) -> Result<Option<String>> {
    let auth = dev::effective_auth(config).context("reading the development key")?;
    let Some((key, secret)) = (auth.keys.iter())
        .filter(|k| k.algorithm.starts_with("HS"))
        .find_map(|k| Some((k, k.secret.as_ref()?)))
    else {
        return Ok(None);
    };
    // A host that requires `iss` and `aud` accepts the first of each;
    // a --claim names others.
    let configured = [("iss", &auth.issuer), ("aud", &auth.audience)];
    for (claim, values) in configured {
        if let Some(first) = values.as_ref().and_then(|v| v.first()) {
            request
                .extra
                .entry(claim)
                .or_insert_with(|| Value::String(first.clone()));
        }
    }
    let token = dev::mint(
        secret,
        key.kid.as_deref(),
        &auth.tenant_claim,
        &auth.roles_claim,
        &request,
    )?;
    Ok(Some(token))
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}
