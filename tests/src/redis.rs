//! A real Redis (Debian's `redis-server`) on a free loopback port, without persistence,
//! that a test can stop and start again on the same port.

use std::{
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{eventually, free_port};

/// A running (or stopped) Redis.
#[derive(Debug)]
pub struct Redis {
    child: Option<Child>,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Redis {
    /// Starts Redis on a free port.
    pub fn start() -> Redis {
        let mut redis = Redis {
            child: None,
            addr: ([127, 0, 0, 1], free_port()).into(),
        };
        redis.resume();
        redis
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Starts it again on the same port (empty: nothing persisted).
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.addr.port().to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}; run scripts/setup.sh"));
        self.child = Some(child);
        let addr = self.addr;
        let up = eventually(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(drop)
        });
        assert!(up.is_some(), "redis-server did not come up on {addr}");
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}
