//! Where global rate-limit counters live: Redis (shared by every Weir replica; one
//! pipelined round trip per request, `INCRBY` and `EXPIRE` per descriptor) or memory
//! (local mode, one process).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex as AsyncMutex;

/// One counter to increment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    /// The counter.
    pub key: String,
    /// By how much.
    pub hits: u64,
    /// When its window ends (Unix seconds); the counter may go after that.
    pub expires_at: u64,
}

/// Why counting failed.
#[derive(Debug, thiserror::Error)]
#[error("rate-limit counters ({backend}): {message}")]
pub struct BackendError {
    backend: &'static str,
    message: String,
}

/// The counters.
#[derive(Debug)]
pub enum Counters {
    /// In this process.
    Memory(MemoryCounters),
    /// In Redis.
    Redis(RedisCounters),
}

impl Counters {
    /// Increments every counter of `batch`; returns each one's value after.
    pub async fn increment(&self, batch: &[Increment], now: u64) -> Result<Vec<u64>, BackendError> {
        match self {
            Counters::Memory(m) => Ok(m.increment(batch, now)),
            Counters::Redis(r) => r.increment(batch, now).await,
        }
    }

    /// `memory` or `redis`.
    pub fn name(&self) -> &'static str {
        match self {
            Counters::Memory(_) => "memory",
            Counters::Redis(_) => "redis",
        }
    }
}

/// Counters in a map, dropped once their window is over.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    counts: Mutex<MemoryState>,
}

/// Counters (value, window end) by key, and when expired ones were last swept.
#[derive(Debug, Default)]
struct MemoryState {
    counts: HashMap<String, (u64, u64)>,
    swept: u64,
}

impl MemoryCounters {
    fn increment(&self, batch: &[Increment], now: u64) -> Vec<u64> {
        let Ok(mut guard) = self.counts.lock() else {
            return batch.iter().map(|_| u64::MAX).collect();
        };
        let MemoryState { counts, swept } = &mut *guard;
        // Sweep expired windows at most once a second, so the map holds live windows only.
        if now > *swept {
            counts.retain(|_, (_, expires)| *expires > now);
            *swept = now;
        }
        batch
            .iter()
            .map(|i| {
                let entry = counts.entry(i.key.clone()).or_insert((0, i.expires_at));
                if entry.1 <= now {
                    *entry = (0, i.expires_at);
                }
                entry.0 += i.hits;
                entry.0
            })
            .collect()
    }
}

/// Counters in Redis. The connection is made on first use and re-made after failures;
/// every call has a deadline, so a Redis that hangs costs at most `timeout` per request.
pub struct RedisCounters {
    client: redis::Client,
    url: String,
    timeout: Duration,
    /// The connection once made (read without locking on every request).
    connection: ArcSwapOption<ConnectionManager>,
    /// Held while the first connection is made.
    connecting: AsyncMutex<()>,
}

impl std::fmt::Debug for RedisCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounters")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RedisCounters {
    /// Counters at `url` (`redis://host:port/db`); nothing is dialled yet.
    pub fn new(url: &str, timeout: Duration) -> Result<RedisCounters, String> {
        let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
        Ok(RedisCounters {
            client,
            url: url.to_string(),
            timeout,
            connection: ArcSwapOption::empty(),
            connecting: AsyncMutex::new(()),
        })
    }

    fn error(&self, message: impl std::fmt::Display) -> BackendError {
        BackendError {
            backend: "redis",
            message: format!("{}: {message}", self.url),
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let _connecting = self.connecting.lock().await;
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let manager = tokio::time::timeout(
            self.timeout * 2,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| self.error("connection timed out"))?
        .map_err(|e| self.error(e))?;
        self.connection.store(Some(Arc::new(manager.clone())));
        Ok(manager)
    }

    async fn increment(&self, batch: &[Increment], now: u64) -> Result<Vec<u64>, BackendError> {
        let mut pipe = redis::pipe();
        for i in batch {
            pipe.cmd("INCRBY").arg(&i.key).arg(i.hits);
            pipe.cmd("EXPIRE")
                .arg(&i.key)
                .arg(i.expires_at.saturating_sub(now).max(1))
                .ignore();
        }
        // A connection Redis dropped (a restart) fails once and is then re-made: try the
        // round trip a second time before giving up. A dropped connection almost always
        // fails on the write; if it failed after Redis ran the commands, the retry counts
        // the request twice, which errs on the side of limiting.
        let mut last = None;
        for _ in 0..2 {
            let mut connection = self.connection().await?;
            let result: Result<Vec<u64>, redis::RedisError> =
                match tokio::time::timeout(self.timeout, pipe.query_async(&mut connection)).await {
                    Ok(result) => result,
                    Err(_) => return Err(self.error("timed out")),
                };
            match result {
                Ok(counts) => return Ok(counts),
                Err(e) if e.is_connection_dropped() || e.is_io_error() => last = Some(e),
                Err(e) => return Err(self.error(e)),
            }
        }
        Err(self.error(last.map_or_else(|| "failed".to_string(), |e| e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_counts_per_key_and_starts_over_with_the_window() {
        let m = MemoryCounters::default();
        let inc = |key: &str, expires_at| Increment {
            key: key.into(),
            hits: 1,
            expires_at,
        };
        assert_eq!(m.increment(&[inc("a", 60), inc("b", 60)], 10), vec![1, 1]);
        assert_eq!(m.increment(&[inc("a", 60)], 20), vec![2]);
        // The window is over: a counter under the same key starts at zero.
        assert_eq!(m.increment(&[inc("a", 120)], 60), vec![1]);
    }
}
