//! `sluice:function/config`: the tenant's values and secrets, read from the
//! store's in-memory copy when the function asks (most never do). A secret
//! read is noted, so the host can blank it out of what the guest prints.

use super::super::bindings::sluice::function::config::Host;
use crate::runtime::state::Capabilities;

impl Host for Capabilities {
    fn get(&mut self, name: String) -> Option<String> {
        let config = self.store.configs().tenant(&self.tenant);
        let value = config.get(&self.function, &name)?;
        if value.secret && !self.revealed.contains(&value.value) {
            self.revealed.push(value.value.clone());
        }
        Some(value.value.to_string())
    }
}
