//! Running the xds-server: the publisher that turns store changes into generations (the
//! TLS gRPC server is [`crate::secure`]).

use std::{sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch, time::Instant};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use weir_store::ClusterState;

use crate::{cache::SnapshotCache, metrics::XdsMetrics};

/// How long a burst of changes may keep arriving before it is published.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// The longest a change waits while changes keep coming.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Publishes a new generation for each settled burst of store changes: after `debounce`
/// without a change, or `max_delay` after the burst's first change, whichever is first.
pub async fn run_publisher(
    mut state: watch::Receiver<ClusterState>,
    cache: Arc<SnapshotCache>,
    metrics: XdsMetrics,
    debounce: Duration,
    max_delay: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
        }
        let first_change = Instant::now();
        loop {
            let deadline = (Instant::now() + debounce).min(first_change + max_delay);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => break,
                changed = state.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if Instant::now() >= first_change + max_delay {
                        break;
                    }
                }
            }
        }
        let snapshot = state.borrow_and_update().clone();
        let generation = cache.publish(snapshot);
        metrics.generation.set(generation as i64);
        debug!(generation, waited = ?first_change.elapsed(), "published configuration generation");
    }
}

/// The connections `listener` accepts, with `TCP_NODELAY` set: gRPC messages are small
/// and answered promptly, and Nagle's algorithm with delayed ACKs would hold some of them
/// back by ~40 ms.
pub fn incoming_nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tokio_stream::StreamExt::map(TcpListenerStream::new(listener), |stream| {
        stream.inspect(|s| {
            let _ = s.set_nodelay(true);
        })
    })
}
