//! Admin routes for tenants' configuration: list (secrets by name only),
//! set, unset, and resealing every secret with the current key after a
//! key rotation. Values are never logged; secrets are never answered.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::http::{Answer, invalid, no_tenant, unavailable};
use crate::config::names::{MAX_CONFIG_VALUE, is_valid_config_name, is_valid_name};
use crate::problem::Problem;
use crate::store::{ConfigError, NewConfig, SealError};

/// What `PUT /v1/tenants/{name}/config/{key}` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetConfig {
    value: String,
    #[serde(default)]
    secret: bool,
    function: Option<String>,
}

/// A tenant's entries; secrets without their values.
pub(super) async fn list(admin: &Admin, tenant: &str) -> Result<Answer, Problem> {
    exists(admin, tenant).await?;
    let entries = admin
        .store
        .config_entries(tenant)
        .await
        .map_err(unavailable)?;
    Ok(Answer::Json(StatusCode::OK, json!({ "config": entries })))
}

/// Sets `name` for the tenant, or for one of its functions.
pub(super) async fn set(
    admin: &Admin,
    tenant: &str,
    name: &str,
    set: SetConfig,
    operator: &str,
) -> Result<Answer, Problem> {
    if let Some(bad) = bad_name(name) {
        return Err(bad);
    }
    if let Some(f) = &set.function
        && !is_valid_name(f)
    {
        return Err(invalid(format!("function {f:?} is not a function name")));
    }
    if set.value.len() > MAX_CONFIG_VALUE {
        return Err(invalid(format!(
            "the value is {} bytes; at most {MAX_CONFIG_VALUE} are kept",
            set.value.len()
        )));
    }
    let new = NewConfig {
        tenant,
        function: set.function.as_deref(),
        name,
        value: &set.value,
        secret: set.secret,
    };
    match admin.store.set_config(&new, operator).await {
        Ok(true) => {}
        Ok(false) => return Err(no_tenant(tenant)),
        Err(ConfigError::Store(e)) => return Err(unavailable(e)),
        Err(ConfigError::Seal(e)) => return Err(no_key(e)),
    }
    tracing::info!(%tenant, function = ?set.function, %name, secret = set.secret, %operator, "configuration set");
    let entries = admin
        .store
        .config_entries(tenant)
        .await
        .map_err(unavailable)?;
    let entry = entries
        .into_iter()
        .find(|e| e.name == name && e.function == set.function);
    Ok(Answer::Json(StatusCode::OK, json!(entry)))
}

/// Removes `name` (of the tenant, or with `function` of one function).
pub(super) async fn unset(
    admin: &Admin,
    tenant: &str,
    name: &str,
    function: Option<&str>,
    operator: &str,
) -> Result<Answer, Problem> {
    if let Some(bad) = bad_name(name) {
        return Err(bad);
    }
    exists(admin, tenant).await?;
    let removed = (admin.store.unset_config(tenant, function, name).await).map_err(unavailable)?;
    if !removed {
        let whose = function.map_or_else(String::new, |f| format!(" for function {f:?}"));
        return Err(Problem::new(
            404,
            "no-such-config",
            "No such configuration value",
            format!("tenant {tenant:?} has no value {name:?}{whose}"),
        ));
    }
    tracing::info!(%tenant, ?function, %name, %operator, "configuration removed");
    Ok(Answer::Json(StatusCode::OK, json!({ "removed": name })))
}

/// Seals every secret again with the current key.
pub(super) async fn reseal(admin: &Admin, operator: &str) -> Result<Answer, Problem> {
    let done = match admin.store.reseal_configs().await {
        Ok(done) => done,
        Err(ConfigError::Store(e)) => return Err(unavailable(e)),
        Err(ConfigError::Seal(e)) => return Err(no_key(e)),
    };
    tracing::info!(resealed = done.resealed, unreadable = done.unreadable, %operator, "secrets resealed");
    Ok(Answer::Json(StatusCode::OK, json!(done)))
}

async fn exists(admin: &Admin, tenant: &str) -> Result<(), Problem> {
    (admin.store.tenant(tenant).await)
        .map_err(unavailable)?
        .map(|_| ())
        .ok_or_else(|| no_tenant(tenant))
}

/// 422 for a name no value can have.
fn bad_name(name: &str) -> Option<Problem> {
    (!is_valid_config_name(name)).then(|| {
        invalid(format!(
            "configuration name {name:?} must be 1-128 characters of A-Z, a-z, 0-9, _, . and -, \
             starting with a letter or _"
        ))
    })
}

/// 409: this host holds no key to seal secrets with.
fn no_key(e: SealError) -> Problem {
    Problem::new(409, "secrets-key-missing", "No secrets key", e.to_string())
}
