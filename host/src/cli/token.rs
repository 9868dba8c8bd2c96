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
    let auth = dev::effective_auth(config).context("reading the development key")?;
    let Some(key) = auth.keys.iter().find(|k| k.algorithm.starts_with("HS")) else {
        bail!("`sluice token` signs with an HS256 key; none is configured");
    };
    let Some(secret) = &key.secret else {
        bail!("the HS key has no secret");
    };
    let mut extra = args.claims.into_iter().collect::<Map<_, _>>();
    // A host that requires `iss` and `aud` accepts the first of each;
    // a --claim names others.
    let configured = [("iss", &auth.issuer), ("aud", &auth.audience)];
    for (claim, values) in configured {
        if let Some(first) = values.as_ref().and_then(|v| v.first()) {
            extra
                .entry(claim)
                .or_insert_with(|| Value::String(first.clone()));
        }
    }
    let request = dev::TokenRequest {
        subject: args.sub,
        tenant: args.tenant,
        roles: args.roles,
        ttl_seconds: args.ttl,
        extra,
    };
    let token = dev::mint(
        secret,
        key.kid.as_deref(),
        &auth.tenant_claim,
        &auth.roles_claim,
        &request,
    )?;
    println!("{token}");
    Ok(())
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s.split_once('=').ok_or("expected NAME=VALUE")?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
    Ok((name.to_owned(), value))
}
