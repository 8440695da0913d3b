//! Local mode plays the kubelet's part for proof: `weir up` writes a ServiceAccount token
//! for every proxy it knows into `--token-dir`, one file per proxy named after its node id
//! (`sidecar~web-0.shop.token`, `gateway~edge.shop.token`, mode 0600), renews each at half
//! its lifetime, and removes the file of a proxy that is gone (its token then fails review:
//! the pod no longer exists). `weir agent --token-file` reads them as it would a projected
//! token in a pod.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use k8s_openapi::jiff::Timestamp;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use weir_store::ClusterState;

use crate::{
    proof::AUDIENCE,
    tokens::{LocalTokens, TokenSubject, wanted_tokens},
};

/// Local mode's proof flags (`weir up`).
#[derive(Debug, Clone, clap::Args)]
pub struct LocalProofArgs {
    /// Where `weir up` writes a token for every proxy it knows (`<node id>.token`),
    /// for `weir agent --token-file`.
    #[arg(long, env = "WEIR_TOKEN_DIR", default_value = ".weir/tokens")]
    pub token_dir: PathBuf,
    /// How long those tokens are valid; each is renewed at half of it.
    #[arg(long, env = "WEIR_PROXY_TOKEN_LIFETIME", default_value = "1h", value_parser = weir_crds::parse_flag_duration)]
    pub proxy_token_lifetime: Duration,
}

/// The file of the token for `node_id` in `dir`.
pub fn token_path(dir: &Path, node_id: &str) -> PathBuf {
    dir.join(format!("{node_id}.token"))
}

/// Starts minting into `--token-dir` for the proxies in `state`.
pub fn start_token_minting(
    args: &LocalProofArgs,
    tokens: Arc<LocalTokens>,
    state: watch::Receiver<ClusterState>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.proxy_token_lifetime >= Duration::from_secs(2),
        "--proxy-token-lifetime: must be at least 2s"
    );
    create_private_dir(&args.token_dir)?;
    info!(dir = %args.token_dir.display(), lifetime = ?args.proxy_token_lifetime, "minting a token for every proxy (weir agent --token-file)");
    let mut minter = Minter {
        dir: args.token_dir.clone(),
        lifetime: args.proxy_token_lifetime,
        tokens,
        minted: BTreeMap::new(),
    };
    minter.sync(&state.borrow());
    let token = shutdown.clone();
    let mut state = state;
    tasks.spawn(async move {
        let check = (minter.lifetime / 20).clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                changed = state.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(check) => {}
            }
            minter.sync(&state.borrow_and_update());
        }
    });
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--token-dir {}: cannot create it", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("--token-dir {}: chmod 0700", dir.display()))
}

struct Minter {
    dir: PathBuf,
    lifetime: Duration,
    tokens: Arc<LocalTokens>,
    /// What each file was minted for, and when.
    minted: BTreeMap<String, (TokenSubject, Timestamp)>,
}

impl Minter {
    fn sync(&mut self, state: &ClusterState) {
        let now = Timestamp::now();
        let wanted = wanted_tokens(state);
        let gone: Vec<String> = self
            .minted
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.minted.remove(&id);
            let path = token_path(&self.dir, &id);
            match std::fs::remove_file(&path) {
                Ok(()) => debug!(proxy = %id, "token removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => warn!(path = %path.display(), error = %e, "cannot remove a token"),
            }
        }
        let half = i64::try_from(self.lifetime.as_secs() / 2).unwrap_or(i64::MAX / 2);
        for (id, subject) in wanted {
            let due = match self.minted.get(&id) {
                Some((minted_for, at)) => {
                    *minted_for != subject || now.as_second() >= at.as_second() + half
                }
                None => true,
            };
            if !due {
                continue;
            }
            match self
                .tokens
                .mint(&subject, AUDIENCE, self.lifetime, now)
                .map_err(anyhow::Error::msg)
                .and_then(|token| write_private(&token_path(&self.dir, &id), &token))
            {
                Ok(()) => {
                    debug!(proxy = %id, "token minted");
                    self.minted.insert(id, (subject, now));
                }
                Err(e) => warn!(proxy = %id, error = %format!("{e:#}"), "cannot write a token"),
            }
        }
    }
}

/// Writes `text` to `path` with mode 0600, atomically (a reader never sees half a token).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("token.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}
