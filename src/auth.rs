//! Clients and their API keys, tenants and roles.
//!
//! A key is looked up by its SHA-256, so the configuration never holds a usable secret.

use std::collections::{BTreeSet, HashMap};

use crate::config::{ClientConfig, Role};

/// An authenticated API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub tenants: Vec<String>,
    pub roles: BTreeSet<Role>,
    /// Set for a cooperative's client.
    pub cooperativa: Option<String>,
}

impl Caller {
    /// Whether the caller holds `role` (admins hold every role).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || self.roles.contains(&Role::Admin)
    }

    /// Whether the caller is bound to `tenant`.
    pub fn may_access(&self, tenant: &str) -> bool {
        self.tenants.iter().any(|t| t == "*" || t == tenant)
    }

    /// The tenants to restrict reads to, or `None` for all.
    pub fn tenant_scope(&self) -> Option<Vec<String>> {
        (!self.tenants.iter().any(|t| t == "*")).then(|| self.tenants.clone())
    }

    /// The identity used by the command line, with every right on every tenant.
    pub fn local_admin() -> Self {
        Self {
            name: "cli".into(),
            tenants: vec!["*".into()],
            roles: BTreeSet::from([Role::Admin]),
            cooperativa: None,
        }
    }
}

/// The configured clients, indexed by key hash.
#[derive(Debug, Default)]
pub struct Clients {
    by_hash: HashMap<String, Caller>,
}

impl Clients {
    pub fn new(config: &[ClientConfig]) -> Self {
        let by_hash = config
            .iter()
            .map(|c| {
                (
                    c.api_key_sha256.to_ascii_lowercase(),
                    Caller {
                        name: c.name.clone(),
                        tenants: c.tenants.clone(),
                        roles: c.roles.clone(),
                        cooperativa: c.cooperativa.clone(),
                    },
                )
            })
            .collect();
        Self { by_hash }
    }

    /// The caller owning `api_key`, if any.
    pub fn authenticate(&self, api_key: &str) -> Option<&Caller> {
        self.by_hash.get(&hash_key(api_key))
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Lower-case hex SHA-256 of an API key, as written in `api_key_sha256`.
pub fn hash_key(api_key: &str) -> String {
    crate::audit::digest(api_key.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_matched_by_hash_and_tenants_bind() {
        let clients = Clients::new(&[ClientConfig {
            name: "vendor-a".into(),
            api_key_sha256: hash_key("secret-a"),
            tenants: vec!["F205".into()],
            roles: BTreeSet::from([Role::Publisher]),
            cooperativa: None,
        }]);
        let caller = clients.authenticate("secret-a").expect("known key");
        assert!(caller.may_access("F205") && !caller.may_access("B157"));
        assert!(caller.has(Role::Publisher) && !caller.has(Role::Operator));
        assert!(clients.authenticate("secret-b").is_none());
    }
}
