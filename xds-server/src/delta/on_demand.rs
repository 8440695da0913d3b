//! What an on-demand sidecar fetches by name: clusters (on-demand CDS) beyond the few its
//! view holds, and virtual hosts (VHDS) by the authority a request carried.

use std::{collections::BTreeSet, sync::Arc};

use crate::{
    cache::{Generation, Resource},
    envoy::{CLUSTER_TYPE, VIRTUAL_HOST_TYPE},
    translate::ViewKey,
};

/// What a subscription's names resolve to in one generation.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    /// The resources named (virtual hosts: of the Services the aliases name).
    pub resources: Vec<Arc<Resource>>,
    /// VHDS aliases (`outbound/<authority>`) and the resource that answers each, if any.
    pub aliases: Vec<(Arc<str>, Option<Arc<str>>)>,
}

impl Fetched {
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.aliases.is_empty()
    }
}

/// Resolves `names` of `type_url` for an on-demand view `key` in `generation`.
pub(super) fn resolve(
    generation: &Generation,
    key: &ViewKey,
    type_url: &str,
    names: &BTreeSet<Arc<str>>,
) -> Fetched {
    let mut fetched = Fetched::default();
    match type_url {
        CLUSTER_TYPE => {
            fetched.resources = names
                .iter()
                .filter_map(|name| generation.on_demand_cluster(name))
                .collect();
        }
        VIRTUAL_HOST_TYPE => {
            for alias in names {
                // `outbound` alone subscribes to the table's namespace: what is sent up
                // front, which is nothing.
                let Some((_, authority)) = alias.rsplit_once('/') else {
                    continue;
                };
                let hosts = generation.on_demand_hosts(key, authority);
                fetched.resources.extend(hosts.resources.iter().cloned());
                fetched.aliases.push((alias.clone(), hosts.matched.clone()));
            }
        }
        _ => {}
    }
    fetched
}
