//! Routing: which destinations an event goes to, from the `[[routes]]` of the config.

use crate::config::RouteConfig;

/// Compiled routes.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<RouteConfig>,
}

fn matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

impl Router {
    pub fn new(routes: Vec<RouteConfig>) -> Self {
        Self { routes }
    }

    /// Destination names for an event, each once, in config order.
    pub fn route(&self, event_type: &str, tenant: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if r.types.iter().any(|p| matches(p, event_type)) && r.tenants.iter().any(|p| matches(p, tenant))
            {
                for d in &r.to {
                    if !out.contains(d) {
                        out.push(d.clone());
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_and_tenants_select_destinations_once() {
        let r = Router::new(vec![
            RouteConfig {
                types: vec!["it.lombardia.csi.prestazione.*".into()],
                tenants: vec!["*".into()],
                to: vec!["a".into()],
            },
            RouteConfig {
                types: vec!["*".into()],
                tenants: vec!["F205".into()],
                to: vec!["a".into(), "b".into()],
            },
        ]);
        assert_eq!(r.route("it.lombardia.csi.prestazione.erogata.v1", "F205"), vec!["a", "b"]);
        assert_eq!(r.route("it.lombardia.csi.prestazione.erogata.v1", "B157"), vec!["a"]);
        assert!(r.route("it.lombardia.csi.persona.registrata.v1", "B157").is_empty());
    }
}
