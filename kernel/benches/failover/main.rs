//! How long a cluster is without a leader when the leader dies: `kill -9` of the leading
//! kernel to the new leader's first completed reconciler pass.
//!
//! Run with `cargo bench -p lain --bench failover` (needs etcd, as the tests). Prints a markdown
//! report and writes `<target dir>/bench/failover.json`.
//!
//! # Method
//!
//! One real etcd, two real `lain serve` processes (the built binary) on it with the default
//! lease TTL (`[store] lease_ttl_secs = 3`) and the Docker runtime (no app is deployed, so a
//! pass reaches no engine). Each round kills the current leader with SIGKILL and polls the
//! other kernel's `GET /api/v1/cluster` every 10 ms until it says `role = leader` (*elected*)
//! and then `reconciler_passes >= 1` (*first pass*); the killed kernel is restarted (it joins as
//! a follower) before the next round, so the roles alternate. The lease TTL bounds the wait for
//! etcd to end the dead leader's lease: the report gives each figure against it. Medians and
//! maxima over rounds; the goal is a first pass within 5 s.

#[path = "../../tests/store_suite/etcd_server.rs"]
mod etcd_server;
#[path = "../support/mode.rs"]
mod mode;

use anyhow::{Context, Result, bail};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "failover-bench-token-0123456789";
const TTL_SECS: u64 = 3;

fn rounds_n() -> usize {
    mode::pick(6, 1)
}

/// A `lain serve` process, killed when dropped.
struct Kernel {
    child: Option<Child>,
    url: String,
    data: PathBuf,
    config: PathBuf,
    router: String,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Kernel {
    fn start(data: &Path, config: &str) -> Result<Kernel> {
        std::fs::create_dir_all(data)?;
        let path = data.join("lain.toml");
        std::fs::write(&path, config)?;
        let mut kernel = Kernel {
            child: None,
            url: format!("http://127.0.0.1:{}", free_port()?),
            data: data.to_path_buf(),
            config: path,
            router: format!("127.0.0.1:{}", free_port()?),
        };
        kernel.spawn()?;
        Ok(kernel)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("kernel.log"))?;
        let listen = self.url.trim_start_matches("http://").to_string();
        self.child = Some(
            Command::new(env!("CARGO_BIN_EXE_lain"))
                .args(["serve", "--listen", &listen, "--data-dir"])
                .arg(&self.data)
                .arg("--config")
                .arg(&self.config)
                .env("LAIN_ROUTER_LISTEN", &self.router)
                .env("LAIN_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("start lain serve")?,
        );
        let deadline = Instant::now() + Duration::from_secs(120);
        while ureq::get(&format!("{}/healthz", self.url)).call().is_err() {
            if Instant::now() > deadline {
                bail!("kernel {} did not start", self.data.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `GET /api/v1/cluster`.
    fn status(&self) -> Result<serde_json::Value> {
        let mut response = ureq::get(&format!("{}/api/v1/cluster", self.url))
            .header("Authorization", &format!("Bearer {TOKEN}"))
            .call()?;
        Ok(serde_json::from_str(
            &response.body_mut().read_to_string()?,
        )?)
    }

    fn leads(&self) -> bool {
        self.status().is_ok_and(|s| s["role"] == "leader")
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn wait(what: &str, limit: Duration, check: impl Fn() -> bool) -> Result<Duration> {
    let start = Instant::now();
    while !check() {
        if start.elapsed() > limit {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(start.elapsed())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    mode::announce("failover");
    let etcd = etcd_server::EtcdServer::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = tempfile::tempdir()?;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    let config = format!(
        "runtime = \"docker\"\n[docker]\nlocal = \"unix:///nonexistent/docker.sock\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"/bench/\"\n\
         lease_ttl_secs = {TTL_SECS}\n\
         [plugins.config.token]\ntokens = [{{ user = \"b\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n",
        etcd.endpoint
    );
    // Every kernel on one store needs the cluster's master key: b gets a's.
    let a = Kernel::start(&tmp.path().join("a"), &config)?;
    std::fs::create_dir_all(tmp.path().join("b"))?;
    std::fs::copy(
        a.data.join("vault.key"),
        tmp.path().join("b").join("vault.key"),
    )
    .context("cannot give b the cluster's master key")?;
    let mut kernels = [a, Kernel::start(&tmp.path().join("b"), &config)?];
    let limit = Duration::from_secs(60);
    wait("a leader", limit, || kernels.iter().any(Kernel::leads))?;
    let (mut elected, mut first_pass) = (Vec::new(), Vec::new());
    for _ in 0..rounds_n() {
        let leader = usize::from(!kernels[0].leads());
        let other = 1 - leader;
        wait("the follower to know the leader", limit, || {
            kernels[other]
                .status()
                .is_ok_and(|s| s["leader"].is_string() && s["role"] == "follower")
        })?;
        let killed = Instant::now();
        kernels[leader].kill9();
        let survivor = &kernels[other];
        wait("the new leader", limit, || survivor.leads())?;
        elected.push(killed.elapsed().as_secs_f64());
        wait("its first pass", limit, || {
            survivor
                .status()
                .is_ok_and(|s| s["reconciler_passes"].as_u64() >= Some(1))
        })?;
        first_pass.push(killed.elapsed().as_secs_f64());
        kernels[leader].spawn()?;
    }
    let ttl = TTL_SECS as f64;
    let (e, f) = (median(&mut elected), median(&mut first_pass));
    let max = first_pass.iter().copied().fold(0.0, f64::max);
    println!("## Failover: kill -9 of the leader to the new leader's first pass\n");
    println!("{} rounds, lease TTL {TTL_SECS} s\n", first_pass.len());
    println!("| | median | max | median / TTL |\n|---|---|---|---|");
    println!("| elected | {e:.2} s | | {:.2}x |", e / ttl);
    println!(
        "| first pass | {f:.2} s | {max:.2} s | {:.2}x (goal < 5 s) |",
        f / ttl
    );
    let report = serde_json::json!({
        "rounds": first_pass.len(), "lease_ttl_s": TTL_SECS,
        "elected_median_s": e, "first_pass_median_s": f, "first_pass_max_s": max,
        "first_pass_over_ttl": f / ttl,
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(mode::report_file("failover")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}
