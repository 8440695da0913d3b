//! The mesh-TLS controller in local mode (`weir up`): statuses go into the stores
//! ([`StoreSink`]), and sidecars are the proxies connected to this process's xds-server,
//! each read from its Envoy admin on loopback ([`AdminSidecars`], `/stats?filter=inbound`).

use std::sync::Arc;

use futures::future::join_all;
use weir_crds::mesh_policy::{MeshPolicy, MeshPolicyStatus};
use weir_runtime::admin_client::AdminClient;
use weir_store::{Object, StateWriter};
use weir_xds::{
    envoy::INBOUND_STAT_PREFIX,
    registry::ProxyRegistry,
    translate::{ProxyId, Role},
};

use super::{InboundCounters, Sidecar, SidecarReading, SidecarSource, StatusSink};
use crate::pod_autoscaler::controller::Event;

/// Local mode: the status goes into the stores (the translator reads it from there; the
/// directory source keeps it across reloads); events are logged only.
#[derive(Debug, Clone)]
pub struct StoreSink(pub Arc<StateWriter>);

impl StatusSink for StoreSink {
    /// Sets the status on the policy as it is now. A decision made for a spec that has
    /// since been edited (the directory was reloaded during the pass) is dropped: writing
    /// the old object back would undo the edit, and its status describes the old spec; the
    /// next pass decides for the new one.
    async fn write(&self, policy: &MeshPolicy, status: &MeshPolicyStatus) -> Result<(), String> {
        let (Some(namespace), Some(name)) = (
            policy.metadata.namespace.as_deref(),
            policy.metadata.name.as_deref(),
        ) else {
            return Ok(());
        };
        self.0.modify(|state| {
            let Some(current) = state.mesh_policies.get_namespaced(namespace, name) else {
                return false;
            };
            if current.spec != policy.spec || current.status.as_ref() == Some(status) {
                return false;
            }
            let mut updated = current.as_ref().clone();
            updated.status = Some(status.clone());
            state.apply(Object::MeshPolicy(Arc::new(updated)));
            true
        });
        Ok(())
    }

    async fn event(&self, _: &MeshPolicy, _: &Event) -> Result<(), String> {
        Ok(())
    }
}

/// Local mode: the connected proxies and their Envoy admin on loopback.
#[derive(Debug, Clone)]
pub struct AdminSidecars {
    proxies: Arc<ProxyRegistry>,
    client: AdminClient,
}

impl AdminSidecars {
    /// Reads the sidecars connected to `proxies`.
    pub fn new(proxies: Arc<ProxyRegistry>) -> Result<Self, String> {
        Ok(AdminSidecars {
            proxies,
            client: AdminClient::new()?,
        })
    }
}

/// Reads a sidecar's inbound counters from its Envoy admin on loopback; `None` if it
/// cannot be reached. A statistic that does not exist (no plaintext chain in Strict or
/// Disable) counts 0.
async fn read_admin(client: &AdminClient, admin_port: u16) -> Option<InboundCounters> {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], admin_port));
    let filter = format!("/stats?filter={INBOUND_STAT_PREFIX}");
    match client.get(admin, &filter).await {
        Ok((200, body)) => Some(InboundCounters::parse(&body)),
        _ => None,
    }
}

impl SidecarSource for AdminSidecars {
    async fn read(&self) -> Result<Vec<SidecarReading>, String> {
        let sidecars: Vec<(Sidecar, Option<u16>)> = self
            .proxies
            .list()
            .into_iter()
            .filter_map(|p| {
                let id: ProxyId = p.node_id.parse().ok()?;
                (id.role == Role::Sidecar).then_some((
                    Sidecar {
                        namespace: id.namespace,
                        pod: id.name,
                    },
                    p.admin_port,
                ))
            })
            .collect();
        let readings = sidecars.into_iter().map(|(sidecar, port)| async move {
            let counters = match port {
                Some(port) => read_admin(&self.client, port).await,
                None => None,
            };
            SidecarReading { sidecar, counters }
        });
        Ok(join_all(readings).await)
    }
}
