//! Tenants' policy in force: each tenant's request rate and concurrency
//! (admission), its token keys, its storage quota and its blob directory.
//! Every change goes through here, whether it came through the admin API,
//! at start-up, or from another node (through the cluster follower).

use std::sync::Arc;

use crate::catalog::sync::TenantSettings;
use crate::config::Rate;
use crate::pipeline::authenticate::jwks::JwksClient;
use crate::pipeline::authenticate::{Keyring, Keys};
use crate::pipeline::receive::Admission;
use crate::store::{Store, Tenant};

/// The handles tenants' settings are put in force through.
pub struct TenantPolicy {
    admission: Arc<Admission>,
    keys: Arc<Keys>,
    store: Store,
}

impl TenantPolicy {
    /// Puts settings in force in `admission`, `keys` and `store`.
    pub fn new(admission: Arc<Admission>, keys: Arc<Keys>, store: Store) -> Self {
        Self {
            admission,
            keys,
            store,
        }
    }

    /// Puts `tenant`'s settings (rate, storage quota, token keys) in force.
    /// Settings that did not change stay as they are: a rate keeps its
    /// bucket, a keyring the JWKS it fetched.
    pub fn apply(&self, tenant: &Tenant) {
        self.set_rate(&tenant.name, tenant.rate);
        self.set_storage_quota(&tenant.name, tenant.max_stored_bytes);
        if let (Some(auth), Some(current)) = (&tenant.auth, self.keys.tenant(&tenant.name))
            && current.built_from(auth)
        {
            return;
        }
        let keyring = tenant.auth.as_ref().map(|auth| {
            // Checked when it was set; should the keys no longer load, the
            // tenant's tokens are refused rather than checked with the host's keys.
            Keyring::new(auth).unwrap_or_else(|e| {
                tracing::error!(tenant = %tenant.name, error = %e, "tenant keys unusable; refusing its tokens");
                Keyring::empty(auth)
            })
        });
        self.set_keyring(&tenant.name, keyring);
    }

    /// Drops everything in force for tenant `name`, which no longer exists.
    pub fn forget(&self, name: &str) {
        self.set_rate(name, None);
        self.set_storage_quota(name, None);
        self.set_keyring(name, None);
        self.store.files().forget(name);
    }

    /// Sets (or, with `None`, lifts) `tenant`'s request rate.
    pub fn set_rate(&self, tenant: &str, rate: Option<Rate>) {
        self.admission.set_rate(tenant, rate);
    }

    /// Sets (or, with `None`, lifts) the bytes `tenant` may store.
    pub fn set_storage_quota(&self, tenant: &str, max_stored_bytes: Option<u64>) {
        self.store.storage_quotas().set(tenant, max_stored_bytes);
    }

    /// Gives `tenant` its own keyring, or (with `None`) the host's again.
    pub fn set_keyring(&self, tenant: &str, keyring: Option<Keyring>) {
        self.keys.set_tenant(tenant, keyring);
    }

    /// The client that fetches JWKS documents, to check a tenant's new settings.
    pub fn jwks_client(&self) -> &JwksClient {
        self.keys.client()
    }
}

impl TenantSettings for TenantPolicy {
    fn apply(&self, tenant: &Tenant) {
        TenantPolicy::apply(self, tenant);
    }

    fn forget(&self, name: &str) {
        TenantPolicy::forget(self, name);
    }
}
