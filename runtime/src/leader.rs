//! Leader election on a `coordination.k8s.io/v1` Lease, on client-go's contract: the
//! holder renews the lease every retry period; another replica takes it over once it has
//! not been renewed for the lease's duration; a holder that shuts down releases it so a
//! successor need not wait.
//!
//! Two writers must never act at once. So a leader that cannot renew stops acting at its
//! *renew deadline* (client-go's default 10 s), measured on this process's monotonic clock
//! from its last successful renewal, which is before the lease's duration (15 s) lets
//! anyone else take over. Every Lease call runs under a timeout that ends at that deadline,
//! so a stalled API server cannot keep a replica "leading"; and each term carries a
//! cancellation token that fires the moment the term ends, so writes in flight stop too
//! ([`Leadership::while_leading`]).
//!
//! Every replica serves (xDS is stateless across replicas); only the writers (status,
//! scaling) act while leading. The decision is pure ([`decide`], [`next_spec`]); [`run`]
//! drives it against a [`LeaseApi`] ([`KubeLeases`] in a cluster, fakes in tests).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{Api, Client, api::PostParams};
use tokio::{sync::watch, time::Instant};
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

/// Where the lease lives, who this replica is, and the timings (client-go's names).
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
    /// How long the leader may go without a successful renewal before it stops acting
    /// (client-go's default: 10 s); shorter than `duration`.
    pub renew_deadline: Duration,
    /// How often to renew or retry (client-go's default: 2 s).
    pub retry: Duration,
}

/// Reads and writes one Lease: the IO boundary of leader election.
pub trait LeaseApi: Send + Sync + 'static {
    /// The lease, or `None` if it does not exist.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Lease>, String>> + Send;
    /// Creates it; fails if someone else created it first.
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<(), String>> + Send;
    /// Replaces it, conditional on the `resourceVersion` it was read with (a concurrent
    /// writer wins and this fails).
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<(), String>> + Send;
}

/// [`LeaseApi`] on the Kubernetes API.
#[derive(Clone)]
pub struct KubeLeases(Api<Lease>);

impl std::fmt::Debug for KubeLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeLeases").finish_non_exhaustive()
    }
}

impl KubeLeases {
    /// Leases in `namespace`.
    pub fn new(client: Client, namespace: &str) -> Self {
        KubeLeases(Api::namespaced(client, namespace))
    }
}

impl LeaseApi for KubeLeases {
    async fn get(&self, name: &str) -> Result<Option<Lease>, String> {
        self.0.get_opt(name).await.map_err(|e| e.to_string())
    }

    async fn create(&self, lease: &Lease) -> Result<(), String> {
        self.0
            .create(&PostParams::default(), lease)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    async fn replace(&self, lease: &Lease) -> Result<(), String> {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        self.0
            .replace(name, &PostParams::default(), lease)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Whether this replica leads, for the writers. Each term has a token that is cancelled
/// when the term ends (lost lease, missed renew deadline, shutdown).
#[derive(Clone, Debug)]
pub struct Leadership {
    term: watch::Receiver<Option<CancellationToken>>,
    /// Keeps the channel open for [`Leadership::always`], which has no elector.
    _always: Option<std::sync::Arc<watch::Sender<Option<CancellationToken>>>>,
}

/// The elector's end of a [`Leadership`].
#[derive(Debug)]
pub struct Elector(watch::Sender<Option<CancellationToken>>);

impl Elector {
    /// Starts a term unless one is running; true if it started one.
    fn lead(&self) -> bool {
        self.0.send_if_modified(|term| {
            if term.is_some() {
                return false;
            }
            *term = Some(CancellationToken::new());
            true
        })
    }

    /// Ends the current term, cancelling its writes; true if there was one.
    fn step_down(&self) -> bool {
        match self.0.send_replace(None) {
            Some(term) => {
                term.cancel();
                true
            }
            None => false,
        }
    }
}

impl Leadership {
    /// A replica that always leads (a single replica, or local mode).
    pub fn always() -> Self {
        let (tx, term) = watch::channel(Some(CancellationToken::new()));
        Leadership {
            term,
            _always: Some(std::sync::Arc::new(tx)),
        }
    }

    /// A replica that leads when [`run`] says so, through the returned [`Elector`].
    pub fn elected() -> (Self, Elector) {
        let (tx, term) = watch::channel(None);
        (
            Leadership {
                term,
                _always: None,
            },
            Elector(tx),
        )
    }

    /// Whether this replica leads now.
    pub fn is_leading(&self) -> bool {
        self.term.borrow().is_some()
    }

    /// Waits until leadership changes; false once the elector is gone.
    pub async fn changed(&mut self) -> bool {
        self.term.changed().await.is_ok()
    }

    /// Runs `write` if this replica leads, and abandons it the moment the term ends:
    /// `None` if it did not lead or the term ended first. Writers put every write
    /// through this, so a replica past its renew deadline writes nothing more.
    pub async fn while_leading<F: Future>(&self, write: F) -> Option<F::Output> {
        let term = self.term.borrow().clone()?;
        tokio::select! {
            biased;
            () = term.cancelled() => None,
            output = write => Some(output),
        }
    }
}

/// Keeps `elector` leading while this replica holds the lease, until `shutdown`, when a
/// held lease is released.
pub async fn run<A: LeaseApi>(
    api: A,
    config: LeaseConfig,
    elector: Elector,
    shutdown: CancellationToken,
) {
    // The monotonic time of the last successful acquire or renewal, while leading.
    let mut renewed: Option<Instant> = None;
    loop {
        // A call may take until the renew deadline while leading; as long as a deadline
        // while following (it then only delays the next try).
        let deadline = renewed.map_or_else(
            || Instant::now() + config.renew_deadline,
            |t| t + config.renew_deadline,
        );
        let outcome = tokio::select! {
            () = shutdown.cancelled() => break,
            outcome = tokio::time::timeout_at(deadline, attempt(&api, &config)) => outcome,
        };
        match outcome {
            Ok(Ok(LeaseDecision::Follow { holder })) => {
                if elector.step_down() {
                    warn!(lease = %config.name, %holder, "lost the leader lease");
                }
                debug!(lease = %config.name, %holder, "following");
                renewed = None;
            }
            Ok(Ok(_)) => {
                renewed = Some(Instant::now());
                if elector.lead() {
                    info!(lease = %config.name, identity = %config.identity, "became leader");
                }
            }
            Ok(Err(e)) => {
                warn!(lease = %config.name, error = %e, "leader election: cannot read or write the Lease")
            }
            Err(_) => {
                warn!(lease = %config.name, timeout = ?config.renew_deadline, "leader election: the Lease call did not finish in time")
            }
        }
        let next = Instant::now() + config.retry;
        let wake = match renewed {
            Some(t) => next.min(t + config.renew_deadline),
            None => next,
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake) => {}
        }
        if renewed.is_some_and(|t| Instant::now() >= t + config.renew_deadline) {
            // Past the deadline without a renewal: another replica may take the lease
            // once its duration runs out, so stop acting now, before that.
            if elector.step_down() {
                warn!(lease = %config.name, deadline = ?config.renew_deadline, "could not renew the leader lease before the renew deadline; stepping down");
            }
            renewed = None;
        }
    }
    if elector.step_down() {
        let release = tokio::time::timeout(config.renew_deadline, release(&api, &config));
        match release.await {
            Ok(Ok(())) => info!(lease = %config.name, "released the leader lease"),
            Ok(Err(e)) => {
                warn!(lease = %config.name, error = %e, "could not release the leader lease")
            }
            Err(_) => warn!(lease = %config.name, "releasing the leader lease timed out"),
        }
    }
}

async fn attempt<A: LeaseApi>(api: &A, config: &LeaseConfig) -> Result<LeaseDecision, String> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get(&config.name).await? else {
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
        api.create(&lease).await?;
        return Ok(LeaseDecision::Acquire);
    };
    let decision = decide(lease.spec.as_ref(), &config.identity, now);
    if let Some(spec) = next_spec(
        lease.spec.as_ref(),
        &decision,
        &config.identity,
        config.duration,
        now,
    ) {
        lease.spec = Some(spec);
        api.replace(&lease).await?;
    }
    Ok(decision)
}

/// Gives the lease up so a successor does not wait for it to expire.
async fn release<A: LeaseApi>(api: &A, config: &LeaseConfig) -> Result<(), String> {
    let Some(mut lease) = api.get(&config.name).await? else {
        return Ok(());
    };
    let Some(spec) = lease.spec.as_mut() else {
        return Ok(());
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    api.replace(&lease).await
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    };

    use super::*;

    const STALLED: u8 = 1;
    const FAILING: u8 = 2;

    /// A Lease API in memory that can stall (calls never return) or fail, and records
    /// when each successful write happened on tokio's (paused) clock.
    #[derive(Default)]
    struct FakeLeases {
        lease: Mutex<Option<Lease>>,
        mode: AtomicU8,
        writes: Mutex<Vec<Instant>>,
    }

    impl FakeLeases {
        async fn gate(&self) -> Result<(), String> {
            match self.mode.load(Ordering::SeqCst) {
                STALLED => std::future::pending().await,
                FAILING => Err("connection refused".into()),
                _ => Ok(()), // healthy
            }
        }

        fn store(&self, lease: &Lease) {
            *self.lease.lock().unwrap() = Some(lease.clone());
            self.writes.lock().unwrap().push(Instant::now());
        }

        fn holder(&self) -> Option<String> {
            let lease = self.lease.lock().unwrap();
            lease.as_ref()?.spec.as_ref()?.holder_identity.clone()
        }

        fn last_write(&self) -> Instant {
            *self.writes.lock().unwrap().last().unwrap()
        }
    }

    impl LeaseApi for Arc<FakeLeases> {
        async fn get(&self, _: &str) -> Result<Option<Lease>, String> {
            self.gate().await?;
            Ok(self.lease.lock().unwrap().clone())
        }

        async fn create(&self, lease: &Lease) -> Result<(), String> {
            self.gate().await?;
            self.store(lease);
            Ok(())
        }

        async fn replace(&self, lease: &Lease) -> Result<(), String> {
            self.gate().await?;
            self.store(lease);
            Ok(())
        }
    }

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "weir-system".into(),
            name: "weir-controllers".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }

    /// Leads, then the API turns `mode` at 5 s; returns when the term ended and the
    /// outcome of a write that was in flight.
    async fn term_end_after_api_turns(mode: u8) -> (Arc<FakeLeases>, Instant, Option<()>) {
        let api = Arc::new(FakeLeases::default());
        let (mut leadership, elector) = Leadership::elected();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(api.clone(), config(), elector, shutdown.clone()));
        assert!(leadership.changed().await);
        assert!(leadership.is_leading());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(leadership.is_leading(), "renewals every 2 s keep the term");
        api.mode.store(mode, Ordering::SeqCst);
        // A write that would never finish on its own, started while leading.
        let in_flight = tokio::spawn({
            let leadership = leadership.clone();
            async move { leadership.while_leading(std::future::pending::<()>()).await }
        });
        assert!(leadership.changed().await);
        assert!(!leadership.is_leading());
        let ended = Instant::now();
        let write = in_flight.await.unwrap();
        shutdown.cancel();
        task.await.unwrap();
        (api, ended, write)
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_api_ends_the_term_at_the_renew_deadline_before_the_lease_can_expire() {
        let (api, ended, write) = term_end_after_api_turns(STALLED).await;
        let renewed = api.last_write();
        let config = config();
        // Exactly at the renew deadline after the last renewal (the stalled call did not
        // hold it up), so before any other replica may take the lease.
        assert_eq!(ended - renewed, config.renew_deadline);
        assert!(ended - renewed < config.duration);
        assert_eq!(write, None, "the write in flight was cancelled");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_api_ends_the_term_at_the_renew_deadline() {
        let (api, ended, write) = term_end_after_api_turns(FAILING).await;
        assert_eq!(ended - api.last_write(), config().renew_deadline);
        assert_eq!(write, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_another_replica_renews_is_followed_and_a_held_one_released_at_shutdown() {
        let api = Arc::new(FakeLeases::default());
        api.store(&Lease {
            metadata: ObjectMeta {
                name: Some("weir-controllers".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("b".into()),
                renew_time: Some(MicroTime(Timestamp::now())),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
        });
        let (leadership, elector) = Leadership::elected();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(api.clone(), config(), elector, shutdown.clone()));
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(!leadership.is_leading());
        assert_eq!(leadership.while_leading(async {}).await, None);
        assert_eq!(api.holder().as_deref(), Some("b"));

        // b lets go; a takes over, and gives the lease back when it stops.
        *api.lease.lock().unwrap() = None;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(leadership.is_leading());
        assert_eq!(api.holder().as_deref(), Some("a"));
        shutdown.cancel();
        task.await.unwrap();
        assert!(!leadership.is_leading());
        assert_eq!(api.holder(), None);
    }

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
