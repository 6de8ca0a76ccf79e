//! The leader election on etcd: a lease kept alive, a campaign, and stepping down.
//!
//! Each kernel grants itself a lease of `[store] lease_ttl_secs` (3 s by default), keeps it
//! alive every third of it and campaigns with etcd's election API under
//! `<prefix>cluster/leader`, its kernel id as value. etcd makes the campaigner with the oldest
//! key the leader. The leader steps down (its loops stopped before anything else is written)
//! when its keep-alives have not been confirmed for a whole TTL (etcd may have let the lease
//! end), or when a fenced write found its key gone; the lease is then revoked, so another
//! kernel takes over at once, and the kernel campaigns again. A kill -9'd leader's lease ends
//! a TTL later; the next campaigner is the leader from then on.

use super::{Cluster, ELECTION};
use anyhow::Context as _;
use etcd_client::{Client, ConnectOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where and how to campaign.
#[derive(Clone, Debug)]
pub struct Settings {
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// The store's key prefix.
    pub prefix: String,
    /// The lease's time to live.
    pub ttl: Duration,
}

impl Settings {
    fn name(&self) -> String {
        format!("{}{ELECTION}", self.prefix)
    }
}

async fn connect(settings: &Settings) -> anyhow::Result<Client> {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(settings.ttl);
    Client::connect(settings.endpoints.clone(), Some(options))
        .await
        .with_context(|| format!("cannot reach etcd at {}", settings.endpoints.join(",")))
}

/// The current leader's kernel id and lease, if any kernel leads.
pub async fn leader(client: &Client, settings: &Settings) -> anyhow::Result<Option<(String, i64)>> {
    match client.election_client().leader(settings.name()).await {
        Ok(response) => Ok(response
            .kv()
            .map(|kv| (String::from_utf8_lossy(kv.value()).into_owned(), kv.lease()))),
        // etcd answers "election: no leader" as an error.
        Err(e) if e.to_string().contains("no leader") => Ok(None),
        Err(e) => Err(e).context("cannot ask etcd who leads"),
    }
}

/// Who led when [`revoke_own_lease`] looked.
enum Led {
    /// No kernel.
    Nobody,
    /// This kernel (a previous run of it, or this run as it stops): its lease is now revoked.
    ThisKernel,
    /// Another kernel, by id.
    Other(String),
}

/// Revokes the election lease if it is this kernel's, so the next leader need not wait for it
/// to end; says who led.
async fn revoke_own_lease(
    client: &Client,
    cluster: &Cluster,
    settings: &Settings,
) -> anyhow::Result<Led> {
    match leader(client, settings).await? {
        None => Ok(Led::Nobody),
        Some((id, lease)) if id == cluster.kernel_id() => {
            client
                .lease_client()
                .revoke(lease)
                .await
                .context("cannot revoke this kernel's lease")?;
            Ok(Led::ThisKernel)
        }
        Some((id, _)) => Ok(Led::Other(id)),
    }
}

/// Hands the leadership over at once when this kernel stops (SIGTERM, Ctrl-C), instead of
/// letting the next leader wait for the lease to end. Call it after the leader's loops have
/// stopped ([`Cluster::step_down`]); a kernel that does not lead changes nothing.
pub async fn resign(cluster: &Cluster, settings: &Settings) -> anyhow::Result<()> {
    let client = connect(settings).await?;
    if let Led::ThisKernel = revoke_own_lease(&client, cluster, settings).await? {
        tracing::info!("handed the leadership over");
    }
    Ok(())
}

/// Checks that this kernel may join: with the process runtime (instances on the kernel's own
/// machine) no other kernel may lead the same prefix. A lease left by this kernel's own
/// previous life (kill -9; the data dir lock proves it is dead) is revoked, so the restarted
/// kernel need not wait for it to end.
pub async fn join(
    cluster: &Cluster,
    settings: &Settings,
    process_runtime: bool,
) -> anyhow::Result<()> {
    let client = connect(settings).await?;
    let id = match revoke_own_lease(&client, cluster, settings).await? {
        Led::Nobody => return Ok(()),
        Led::ThisKernel => {
            tracing::info!("revoked the lease of this kernel's previous run");
            return Ok(());
        }
        Led::Other(id) => id,
    };
    if process_runtime {
        anyhow::bail!(
            "kernel {id} already leads the etcd prefix {:?}, and this kernel uses the process \
             runtime, whose instances run on the machine of the kernel that starts them: a \
             second kernel could not take them over. Run several kernels with the Docker \
             runtime (docs/operations.md), or give this kernel another prefix",
            settings.prefix
        );
    }
    Ok(())
}

/// Campaigns, leads and steps down, again and again; never returns.
pub async fn run(cluster: Arc<Cluster>, settings: Settings) {
    let watcher = tokio::spawn(watch_leader(cluster.clone(), settings.clone()));
    loop {
        if let Err(e) = term(&cluster, &settings).await {
            tracing::warn!(kernel = %cluster.kernel_id(), "election: {e:#}");
        }
        cluster.step_down("its lease or etcd was lost").await;
        tokio::time::sleep(settings.ttl / 3).await;
        if watcher.is_finished() {
            tracing::error!("election: the leader watcher stopped");
        }
    }
}

/// One lease: campaign with it, lead while it lives. Returns (to step down) when it is lost.
async fn term(cluster: &Cluster, settings: &Settings) -> anyhow::Result<()> {
    let client = connect(settings).await?;
    let ttl = i64::try_from(settings.ttl.as_secs()).unwrap_or(i64::MAX);
    let mut leases = client.lease_client();
    let asked = Instant::now();
    let lease = leases
        .grant(ttl, None)
        .await
        .context("cannot grant a lease")?
        .id();
    cluster.fence().confirm_lease(asked + settings.ttl);
    let kept = keep_alive(client.clone(), lease, settings.ttl, cluster.fence());
    tokio::pin!(kept);
    let campaign = async {
        let mut election = client.election_client();
        election
            .campaign(settings.name(), cluster.kernel_id(), lease)
            .await
            .context("campaign failed")
    };
    let won = tokio::select! {
        won = campaign => won?,
        lost = &mut kept => return Err(lost),
    };
    let key = won
        .leader()
        .and_then(|l| std::str::from_utf8(l.key()).ok())
        .and_then(|k| k.strip_prefix(&settings.prefix))
        .context("etcd's campaign answer has no leader key")?
        .to_string();
    cluster
        .fence()
        .hold(key, cluster.kernel_id().as_bytes().to_vec());
    cluster.become_leader();
    let lost = tokio::select! {
        lost = &mut kept => lost,
        () = cluster.fence().lost() => anyhow::anyhow!("a fenced write found the leadership gone"),
    };
    cluster.step_down(&format!("{lost:#}")).await;
    // Hand over at once rather than after the TTL (fails harmlessly when etcd is away).
    let _ = tokio::time::timeout(settings.ttl, leases.revoke(lease)).await;
    Err(lost)
}

/// Keeps `lease` alive every third of `ttl`, telling `fence` until when it lives; returns when
/// etcd has not confirmed it for a whole `ttl` (measured from the sending of the last confirmed
/// keep-alive), or ended it.
async fn keep_alive(
    client: Client,
    lease: i64,
    ttl: Duration,
    fence: &super::fence::Fence,
) -> anyhow::Error {
    let every = ttl / 3;
    let mut confirmed = Instant::now();
    let mut stream = None;
    loop {
        if confirmed.elapsed() >= ttl {
            return anyhow::anyhow!("lease {lease:x} unconfirmed for {ttl:?}");
        }
        let sent = Instant::now();
        if stream.is_none() {
            stream = tokio::time::timeout(every, client.lease_client().keep_alive(lease))
                .await
                .ok()
                .and_then(Result::ok);
        }
        if let Some((keeper, responses)) = &mut stream {
            let answer = async {
                keeper.keep_alive().await?;
                responses.message().await
            };
            match tokio::time::timeout(every, answer).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    confirmed = sent;
                    fence.confirm_lease(sent + ttl);
                }
                Ok(Ok(Some(_))) => return anyhow::anyhow!("lease {lease:x} ended"),
                _ => stream = None,
            }
        }
        tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
    }
}

/// Keeps [`Cluster`]'s idea of the leader current while this kernel follows (once a second).
async fn watch_leader(cluster: Arc<Cluster>, settings: Settings) {
    let mut client = None;
    loop {
        if !cluster.is_leader() {
            if client.is_none() {
                client = connect(&settings).await.ok();
            }
            if let Some(c) = &client {
                match tokio::time::timeout(settings.ttl, leader(c, &settings)).await {
                    Ok(Ok(l)) if !cluster.is_leader() => cluster.saw_leader(l.map(|(id, _)| id)),
                    Ok(Ok(_)) => {}
                    _ => cluster.saw_leader(None),
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
