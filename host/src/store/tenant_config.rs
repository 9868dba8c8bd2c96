//! Tenants' configuration for their functions: values and secrets that
//! operators set and guests read through `sluice:function/config`.
//!
//! Rows change rarely, on their own short connection, each change telling
//! the other nodes through the catalog generation. What guests read is the
//! in-memory [`Configs`], loaded whole from the rows (secrets opened) at
//! start and again after every change here or on another node, so a read
//! on the request path touches no database and no cipher.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sqlx::Row;

use super::sealing::{SealError, SecretKeys};
use super::{Store, StoreError, now_ms};

/// One value a guest can read.
#[derive(Debug, Clone)]
pub struct ConfigValue {
    /// The value, opened if it is a secret.
    pub value: Arc<str>,
    /// True for a secret: blanked out of the guest's output.
    pub secret: bool,
}

/// Every value one tenant's functions can read.
#[derive(Debug, Default)]
pub struct TenantConfig {
    /// By name, then function; function `""` for the whole tenant.
    values: HashMap<String, HashMap<String, ConfigValue>>,
}

impl TenantConfig {
    /// The value `function` reads as `name`: its own, else the tenant's.
    pub fn get(&self, function: &str, name: &str) -> Option<&ConfigValue> {
        let by_function = self.values.get(name)?;
        (by_function.get(function)).or_else(|| by_function.get(""))
    }
}

/// Every tenant's values, as guests read them, and the keys that open secrets.
pub struct Configs {
    keys: SecretKeys,
    tenants: RwLock<HashMap<String, Arc<TenantConfig>>>,
    none: Arc<TenantConfig>,
}

impl Configs {
    /// No values yet; secrets sealed and opened with `keys`.
    pub fn new(keys: SecretKeys) -> Self {
        Self {
            keys,
            tenants: RwLock::default(),
            none: Arc::default(),
        }
    }

    /// What `tenant`'s functions read now.
    pub fn tenant(&self, tenant: &str) -> Arc<TenantConfig> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).unwrap_or(&self.none).clone()
    }
}

/// A configuration entry as the admin API shows it: a secret's value never.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigEntry {
    /// Its name.
    pub name: String,
    /// The function it is for; `None` for every function of the tenant.
    pub function: Option<String>,
    /// True for a secret.
    pub secret: bool,
    /// The value, for anything but a secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// For a secret: the id of the key that sealed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_with: Option<String>,
    /// Unix ms of the last set.
    pub updated_at: i64,
    /// The operator key that set it.
    pub updated_by: String,
}

/// A value to set.
pub struct NewConfig<'a> {
    /// The tenant.
    pub tenant: &'a str,
    /// The function it is for; `None` for every function of the tenant.
    pub function: Option<&'a str>,
    /// Its name.
    pub name: &'a str,
    /// The value, in the clear.
    pub value: &'a str,
    /// Seal it, show it to nobody again.
    pub secret: bool,
}

/// Why a configuration change was not made.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The secret could not be sealed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl From<sqlx::Error> for ConfigError {
    fn from(e: sqlx::Error) -> Self {
        ConfigError::Store(e.into())
    }
}

impl Store {
    /// What the functions of every tenant read, and the keys.
    pub fn configs(&self) -> &Arc<Configs> {
        &self.configs
    }

    /// Sets a value (sealing it if it is a secret); false if there is no
    /// such tenant.
    pub async fn set_config(&self, new: &NewConfig<'_>, by: &str) -> Result<bool, ConfigError> {
        let function = new.function.unwrap_or("");
        let value = match new.secret {
            true => (self.configs.keys).seal(new.value, &[new.tenant, function, new.name])?,
            false => new.value.to_owned(),
        };
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE name = $1")
            .bind(new.tenant)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO tenant_config (tenant, function, name, secret, value, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant, function, name) DO UPDATE SET secret = excluded.secret, \
             value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(new.tenant)
        .bind(function)
        .bind(new.name)
        .bind(i64::from(new.secret))
        .bind(value)
        .bind(now_ms())
        .bind(by)
        .execute(&mut *tx)
        .await?;
        super::notices::changed(&mut tx).await?;
        tx.commit().await?;
        self.load_configs().await?;
        Ok(true)
    }

    /// Removes a value; false if there was none.
    pub async fn unset_config(
        &self,
        tenant: &str,
        function: Option<&str>,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let removed = sqlx::query(
            "DELETE FROM tenant_config WHERE tenant = $1 AND function = $2 AND name = $3",
        )
        .bind(tenant)
        .bind(function.unwrap_or(""))
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if removed {
            super::notices::changed(&mut tx).await?;
        }
        tx.commit().await?;
        self.load_configs().await?;
        Ok(removed)
    }

    /// `tenant`'s entries by function, then name; secrets without their values.
    pub async fn config_entries(&self, tenant: &str) -> Result<Vec<ConfigEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, function, secret, value, updated_at, updated_by FROM tenant_config \
             WHERE tenant = $1 ORDER BY function, name",
        )
        .bind(tenant)
        .fetch_all(&self.reads)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let secret = r.get::<i64, _>(2) != 0;
                let value: String = r.get(3);
                let function: String = r.get(1);
                ConfigEntry {
                    name: r.get(0),
                    function: (!function.is_empty()).then_some(function),
                    secret,
                    sealed_with: secret
                        .then(|| SecretKeys::key_of(&value).map(str::to_owned))
                        .flatten(),
                    value: (!secret).then_some(value),
                    updated_at: r.get(4),
                    updated_by: r.get(5),
                }
            })
            .collect())
    }

    /// Reads every tenant's values into [`Configs`], opening the secrets. A
    /// secret this host cannot open is left out (its functions read
    /// `none`) and logged by name, never by value.
    pub async fn load_configs(&self) -> Result<(), StoreError> {
        let rows = sqlx::query("SELECT tenant, function, name, secret, value FROM tenant_config")
            .fetch_all(&self.reads)
            .await?;
        let mut tenants: HashMap<String, TenantConfig> = HashMap::new();
        for r in &rows {
            let (tenant, function, name): (String, String, String) = (r.get(0), r.get(1), r.get(2));
            let secret = r.get::<i64, _>(3) != 0;
            let stored: String = r.get(4);
            let value = match secret {
                false => stored,
                true => match self
                    .configs
                    .keys
                    .open(&stored, &[&tenant, &function, &name])
                {
                    Ok(value) => value,
                    Err(e) => {
                        tracing::warn!(%tenant, %function, %name, error = %e, "a secret cannot be opened; its functions read none");
                        continue;
                    }
                },
            };
            let entry = ConfigValue {
                value: value.into(),
                secret,
            };
            let values = &mut tenants.entry(tenant).or_default().values;
            values.entry(name).or_default().insert(function, entry);
        }
        let tenants = tenants.into_iter().map(|(t, c)| (t, Arc::new(c))).collect();
        *self
            .configs
            .tenants
            .write()
            .unwrap_or_else(|e| e.into_inner()) = tenants;
        Ok(())
    }

    /// Seals again with the current key every secret sealed with another
    /// one, for a key rotation; the count resealed. Secrets no key held
    /// opens are left as they are and counted apart.
    pub async fn reseal_configs(&self) -> Result<Resealed, ConfigError> {
        let keys = &self.configs.keys;
        let current = keys.current_id().ok_or(SealError::NoKey)?.to_owned();
        let mut conn = self.admin_connection().await?;
        let mut tx = super::locks::begin_admin(&mut conn).await?;
        let rows =
            sqlx::query("SELECT tenant, function, name, value FROM tenant_config WHERE secret = 1")
                .fetch_all(&mut *tx)
                .await?;
        let mut done = Resealed::default();
        for r in &rows {
            let (tenant, function, name, sealed): (String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            if SecretKeys::key_of(&sealed) == Some(current.as_str()) {
                done.current += 1;
                continue;
            }
            let place = [tenant.as_str(), &function, &name];
            let Ok(plain) = keys.open(&sealed, &place) else {
                done.unreadable += 1;
                continue;
            };
            sqlx::query(
                "UPDATE tenant_config SET value = $1 WHERE tenant = $2 AND function = $3 AND name = $4",
            )
            .bind(keys.seal(&plain, &place)?)
            .bind(&tenant)
            .bind(&function)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            done.resealed += 1;
        }
        if done.resealed > 0 {
            super::notices::changed(&mut tx).await?;
        }
        tx.commit().await?;
        self.load_configs().await?;
        Ok(done)
    }
}

/// What a reseal did.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Resealed {
    /// Sealed again with the current key.
    pub resealed: u64,
    /// Sealed with the current key already.
    pub current: u64,
    /// Sealed with a key this host does not hold; left as they were.
    pub unreadable: u64,
}
