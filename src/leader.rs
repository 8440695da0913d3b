//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the holder
//! renews the lease; another replica takes it over once it has not been renewed for its
//! duration; a holder that shuts down releases it so a successor need not wait.
//!
//! Every replica serves (xDS is stateless across replicas); only the writers (status,
//! scaling) act while leading. The decision is pure ([`decide`]); [`run`] is the thin
//! adapter that reads and writes the Lease.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{PostParams, entry::Entry},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The API calls leader election makes.
pub const API_CALLS: &[crate::ApiCall] = &[
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
];

/// What this replica should do with the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// This replica holds it: renew it.
    Renew,
    /// Another replica holds it and renewed it in time.
    Follow {
        /// Who.
        holder: String,
    },
}

/// Decides from the lease as read at `now`.
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = spec else {
        return LeaseDecision::Acquire;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    if holder == identity {
        return LeaseDecision::Renew;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match renewed {
        Some(renewed) if renewed + duration > now => LeaseDecision::Follow {
            holder: holder.to_string(),
        },
        _ => LeaseDecision::Acquire,
    }
}

/// The lease spec after acting on `decision` (`None` for [`LeaseDecision::Follow`]).
pub fn next_spec(
    current: Option<&LeaseSpec>,
    decision: &LeaseDecision,
    identity: &str,
    duration: Duration,
    now: Timestamp,
) -> Option<LeaseSpec> {
    let seconds = i32::try_from(duration.as_secs()).unwrap_or(i32::MAX);
    match decision {
        LeaseDecision::Follow { .. } => None,
        LeaseDecision::Renew => Some(LeaseSpec {
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            ..current.cloned().unwrap_or_default()
        }),
        LeaseDecision::Acquire => Some(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_duration_seconds: Some(seconds),
            lease_transitions: Some(
                current
                    .and_then(|s| s.lease_transitions)
                    .unwrap_or(0)
                    .saturating_add(i32::from(current.is_some())),
            ),
            ..Default::default()
        }),
    }
}

/// Where the lease lives and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica (the pod name).
    pub identity: String,
    /// How long a lease holds without renewal (client-go's default: 15 s).
    pub duration: Duration,
    /// How often to renew or retry (client-go's default retry period: 2 s).
    pub retry: Duration,
}

/// Keeps `leading` true while this replica holds the lease, until `shutdown`, when a held
/// lease is released.
pub async fn run(
    client: Client,
    config: LeaseConfig,
    leading: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut last_renewal: Option<tokio::time::Instant> = None;
    loop {
        match attempt(&api, &config).await {
            Ok(LeaseDecision::Follow { holder }) => {
                if leading.send_replace(false) {
                    warn!(lease = %config.name, %holder, "lost the leader lease");
                }
                debug!(lease = %config.name, %holder, "following");
                last_renewal = None;
            }
            Ok(_) => {
                last_renewal = Some(tokio::time::Instant::now());
                if !leading.send_replace(true) {
                    info!(lease = %config.name, identity = %config.identity, "became leader");
                }
            }
            Err(e) => {
                // Without a renewal for the lease's duration another replica may have
                // taken over: stop acting as leader.
                let expired = last_renewal.is_none_or(|t| t.elapsed() >= config.duration);
                if expired && leading.send_replace(false) {
                    warn!(lease = %config.name, error = %e, "could not renew the leader lease in time; stepping down");
                } else {
                    warn!(lease = %config.name, error = %e, "leader election: cannot read or write the Lease");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(config.retry) => {}
        }
    }
    if *leading.borrow() {
        leading.send_replace(false);
        match release(&api, &config).await {
            Ok(()) => info!(lease = %config.name, "released the leader lease"),
            Err(e) => warn!(lease = %config.name, error = %e, "could not release the leader lease"),
        }
    }
}

async fn attempt(api: &Api<Lease>, config: &LeaseConfig) -> anyhow::Result<LeaseDecision> {
    let now = Timestamp::now();
    let mut decision = LeaseDecision::Acquire;
    let entry = api.entry(&config.name).await?.and_modify(|lease| {
        decision = decide(lease.spec.as_ref(), &config.identity, now);
        if let Some(spec) = next_spec(
            lease.spec.as_ref(),
            &decision,
            &config.identity,
            config.duration,
            now,
        ) {
            lease.spec = Some(spec);
        }
    });
    match entry {
        Entry::Occupied(mut occupied) => {
            if !matches!(decision, LeaseDecision::Follow { .. }) {
                // Replaces with the resourceVersion read: a concurrent writer wins, we retry.
                occupied.commit(&PostParams::default()).await?;
            }
        }
        Entry::Vacant(vacant) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: next_spec(
                    None,
                    &LeaseDecision::Acquire,
                    &config.identity,
                    config.duration,
                    now,
                ),
            };
            vacant.insert(lease).commit(&PostParams::default()).await?;
        }
    }
    Ok(decision)
}

/// Gives the lease up so a successor does not wait for it to expire.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> anyhow::Result<()> {
    if let Entry::Occupied(mut occupied) = api.entry(&config.name).await? {
        let Some(spec) = occupied.get_mut().spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        occupied.commit(&PostParams::default()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn held_by(holder: &str, renewed: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(at(renewed))),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn an_absent_or_released_lease_is_acquired() {
        let now = at("2026-11-22T10:00:00Z");
        assert_eq!(decide(None, "a", now), LeaseDecision::Acquire);
        let released = LeaseSpec {
            holder_identity: None,
            ..held_by("x", "2026-11-22T09:59:59Z")
        };
        assert_eq!(decide(Some(&released), "a", now), LeaseDecision::Acquire);
    }

    #[test]
    fn the_holder_renews_and_others_follow_until_it_expires() {
        let lease = held_by("b", "2026-11-22T10:00:00Z");
        assert_eq!(
            decide(Some(&lease), "b", at("2026-11-22T10:00:05Z")),
            LeaseDecision::Renew
        );
        assert_eq!(
            decide(Some(&lease), "a", at("2026-11-22T10:00:14Z")),
            LeaseDecision::Follow { holder: "b".into() }
        );
        // 15 s without renewal: expired.
        assert_eq!(
            decide(Some(&lease), "a", at("2026-11-22T10:00:15Z")),
            LeaseDecision::Acquire
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let now = at("2026-11-22T10:01:00Z");
        let lease = held_by("b", "2026-11-22T10:00:00Z");
        let taken = next_spec(
            Some(&lease),
            &LeaseDecision::Acquire,
            "a",
            Duration::from_secs(15),
            now,
        )
        .unwrap();
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.renew_time, Some(MicroTime(now)));
        let renewed = next_spec(
            Some(&taken),
            &LeaseDecision::Renew,
            "a",
            Duration::from_secs(15),
            at("2026-11-22T10:01:02Z"),
        )
        .unwrap();
        assert_eq!(renewed.lease_transitions, Some(4));
        assert_eq!(renewed.acquire_time, Some(MicroTime(now)));
        let first = next_spec(
            None,
            &LeaseDecision::Acquire,
            "a",
            Duration::from_secs(15),
            now,
        )
        .unwrap();
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(
            next_spec(
                Some(&lease),
                &LeaseDecision::Follow { holder: "b".into() },
                "a",
                Duration::from_secs(15),
                now
            ),
            None
        );
    }
}
