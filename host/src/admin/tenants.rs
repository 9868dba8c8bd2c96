//! Admin routes for tenants: list, create, show, delete, and their
//! settings (token keys, request rate, quotas), each put in force through
//! the tenant policy once it is stored.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::Admin;
use super::functions::refused;
use super::http::{Answer, invalid, no_tenant, unavailable};
use crate::catalog::Origin;
use crate::config::names::is_valid_name;
use crate::config::{AuthConfig, Rate};
use crate::pipeline::authenticate::Keyring;
use crate::problem::Problem;
use crate::store::TenantQuota;

/// Every tenant.
pub(super) async fn list(admin: &Admin) -> Result<Answer, Problem> {
    let tenants = admin.store.tenants().await.map_err(unavailable)?;
    Ok(Answer::Json(StatusCode::OK, json!({ "tenants": tenants })))
}

/// What `POST /v1/tenants` takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenant {
    name: String,
}

/// Creates a tenant; 201 with it, 409 if it exists.
pub(super) async fn create(
    admin: &Admin,
    new: NewTenant,
    operator: &str,
) -> Result<Answer, Problem> {
    if !is_valid_name(&new.name) {
        return Err(invalid(format!(
            "tenant name {:?} must be 1-63 characters of a-z, 0-9 and -, not starting with -",
            new.name
        )));
    }
    let created = (admin.store.create_tenant(&new.name, operator).await).map_err(unavailable)?;
    if !created {
        return Err(Problem::new(
            409,
            "tenant-exists",
            "Tenant exists",
            format!("tenant {:?} exists already", new.name),
        ));
    }
    let tenant = admin.store.tenant(&new.name).await.map_err(unavailable)?;
    tracing::info!(tenant = %new.name, operator = %operator, "tenant created");
    Ok(Answer::Json(StatusCode::CREATED, json!(tenant)))
}

/// A tenant with the names of its live functions.
pub(super) async fn show(admin: &Admin, name: &str) -> Result<Answer, Problem> {
    let tenant = (admin.store.tenant(name).await)
        .map_err(unavailable)?
        .ok_or_else(|| no_tenant(name))?;
    let stored_bytes = admin.store.stored_bytes(name).await.map_err(unavailable)?;
    let functions = admin.live.functions_of(name);
    let mut body = json!(tenant);
    body["usage"] = json!({ "functions": functions.len(), "stored_bytes": stored_bytes });
    body["functions"] = json!(functions);
    Ok(Answer::Json(StatusCode::OK, body))
}

/// The OpenAPI document of a tenant's live routes, as its clients get it.
pub(super) async fn openapi(admin: &Admin, name: &str) -> Result<Answer, Problem> {
    (admin.store.tenant(name).await)
        .map_err(unavailable)?
        .ok_or_else(|| no_tenant(name))?;
    let doc = crate::catalog::openapi::tenant_document(&admin.live.load(), name);
    Ok(Answer::Json(StatusCode::OK, doc))
}

/// Deletes a tenant and its data; with functions, only with `force` and
/// only if none comes from a functions directory.
pub(super) async fn delete(
    admin: &Admin,
    name: &str,
    force: bool,
    operator: &str,
) -> Result<Answer, Problem> {
    (admin.store.tenant(name).await)
        .map_err(unavailable)?
        .ok_or_else(|| no_tenant(name))?;
    let catalog = admin.live.load_full();
    let units: Vec<_> = catalog.units_of(name).collect();
    if !units.is_empty() {
        // Functions loaded from the functions directories cannot be
        // taken down at run time, so even `force` cannot remove them.
        let from_dirs = units.iter().any(|u| u.origin == Origin::Directory);
        let why = if from_dirs {
            "some come from the functions directories; remove their manifests and restart first"
        } else if force {
            ""
        } else {
            "pass ?force=true to delete it with its functions and data"
        };
        if from_dirs || !force {
            return Err(Problem::new(
                409,
                "tenant-in-use",
                "Tenant in use",
                format!("tenant {name:?} has {} function(s): {why}", units.len()),
            ));
        }
        for unit in units {
            (admin.deployer.remove(name, &unit.function.name).await).map_err(refused)?;
        }
    }
    admin.store.delete_tenant(name).await.map_err(unavailable)?;
    tracing::info!(tenant = %name, operator = %operator, "tenant deleted");
    Ok(Answer::Json(StatusCode::OK, json!({ "deleted": name })))
}

/// Gives a tenant token settings of its own, checked (keys load, the JWKS
/// can be fetched) before they are stored.
pub(super) async fn set_auth(
    admin: &Admin,
    name: &str,
    auth: AuthConfig,
    operator: &str,
) -> Result<Answer, Problem> {
    if auth.keys.is_empty() && auth.jwks_url.is_none() {
        return Err(invalid(
            "keys: at least one key, or a jwks_url, is needed".into(),
        ));
    }
    if auth.keys.iter().any(|k| k.public_key_file.is_some()) {
        return Err(invalid(
            "keys: give public keys as public_key_pem; the admin API reads no files".into(),
        ));
    }
    let keyring = Keyring::new(&auth).map_err(|e| invalid(format!("keys: {e}")))?;
    // Fetched now, so a wrong URL is refused here rather than failing
    // every request later.
    if let Some(jwks) = keyring.jwks() {
        let client = admin.tenants.jwks_client();
        (jwks.refresh(client, std::time::Duration::ZERO).await).map_err(invalid)?;
    }
    let set = admin.store.set_tenant_auth(name, Some(&auth)).await;
    if !set.map_err(unavailable)? {
        return Err(no_tenant(name));
    }
    admin.tenants.set_keyring(name, Some(keyring));
    tracing::info!(tenant = %name, keys = auth.keys.len(), operator = %operator, "tenant token settings set");
    answer(admin, name).await
}

/// Returns a tenant to the host's token settings.
pub(super) async fn clear_auth(
    admin: &Admin,
    name: &str,
    operator: &str,
) -> Result<Answer, Problem> {
    let set = admin.store.set_tenant_auth(name, None).await;
    if !set.map_err(unavailable)? {
        return Err(no_tenant(name));
    }
    admin.tenants.set_keyring(name, None);
    tracing::info!(tenant = %name, operator = %operator, "tenant token settings removed");
    answer(admin, name).await
}

/// Stores and applies a tenant's request rate (`None` lifts it).
pub(super) async fn set_rate(
    admin: &Admin,
    name: &str,
    rate: Option<Rate>,
    operator: &str,
) -> Result<Answer, Problem> {
    if let Some(rate) = rate
        && !(rate.requests_per_second.is_finite()
            && rate.requests_per_second > 0.0
            && rate.burst != Some(0))
    {
        return Err(invalid(
            "requests_per_second must be a positive number and burst at least 1".into(),
        ));
    }
    let set = admin.store.set_tenant_rate(name, rate).await;
    if !set.map_err(unavailable)? {
        return Err(no_tenant(name));
    }
    admin.tenants.set_rate(name, rate);
    tracing::info!(tenant = %name, ?rate, operator = %operator, "tenant rate set");
    answer(admin, name).await
}

/// Stores and applies a tenant's quotas.
pub(super) async fn set_quota(
    admin: &Admin,
    name: &str,
    quota: TenantQuota,
    operator: &str,
) -> Result<Answer, Problem> {
    let set = admin.store.set_tenant_quota(name, quota).await;
    if !set.map_err(unavailable)? {
        return Err(no_tenant(name));
    }
    admin
        .tenants
        .set_storage_quota(name, quota.max_stored_bytes);
    tracing::info!(tenant = %name, ?quota, operator = %operator, "tenant quota set");
    answer(admin, name).await
}

/// 200 with tenant `name` as stored now.
async fn answer(admin: &Admin, name: &str) -> Result<Answer, Problem> {
    let tenant = admin.store.tenant(name).await.map_err(unavailable)?;
    Ok(Answer::Json(StatusCode::OK, json!(tenant)))
}
