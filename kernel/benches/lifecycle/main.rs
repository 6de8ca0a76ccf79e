//! What the lifecycle costs: deploying 100 instances on the process runtime, and reading the API.
//!
//! Run with `cargo bench -p lain --bench lifecycle`. Prints a markdown report to stdout and writes
//! the figures as JSON to `<target dir>/bench/lifecycle.json`; progress goes to stderr.
//!
//! # Method
//!
//! **Deploy.** Three ways of getting `instances_n()` `sleep` processes running, measured in
//! interleaved rounds (the order rotates each round, so machine drift hits all alike):
//! - *plain spawn*: `std::process::Command::spawn` of `sleep` 100 times, the floor;
//! - *bare sandbox*: 100 `sleep`s each in lain's sandbox as an instance gets it (bubblewrap and
//!   lain's init, which reports once `sleep` runs), all spawned, then each report awaited; no
//!   shim, no instance directory, no kernel: the sandbox engine's own floor;
//! - *runtime only*: `ProcessRuntime::create` + `start` of the 100 instances, 16 at a time (what
//!   the reconciler does), each supervised by its shim: the runtime's own cost;
//! - *lain deploy*: `Lifecycle::deploy` of an app with one proc of 100 instances, until the
//!   reconciler reports them all running: rendering through the proc-type plugin, 100 placements
//!   through the scheduler plugins, the runtime, the status;
//! - *CLI deploy*: the real `lain deploy -a bench` binary against the kernel's API on a loopback
//!   socket, until it exits (it returns once the app converged: every instance ready), which is
//!   what a user waits for.
//!
//! The kernel's own overhead per instance is `(lain deploy - runtime only) / 100`. Between
//! rounds everything is stopped and removed, untimed. Figures are medians over rounds; ratios
//! are medians of per-round paired ratios. Nothing is asserted about speed; the program fails
//! only if an instance does not run.
//!
//! **Watch latency.** A client follows `GET /api/v1/watch?kinds=node&format=ndjson` over
//! loopback; the bench changes a node's labels `watch_n()` times, one at a time, and times each
//! from just before the store write to the line read by the client.
//!
//! **API reads.** `GET /api/v1/apps/bench` (the `lain ps` view of the 100 instances) next to
//! `GET /healthz` (the floor of the HTTP stack), over loopback with keep-alive clients.

#[path = "../support/cleanup.rs"]
mod cleanup;
#[path = "../support/mode.rs"]
mod mode;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use lain::runtime::process::ProcessRuntime;
use lain::runtime::process::sandbox::{DEFAULT_PATH, Jail, Sandbox};
use lain::runtime::{InstanceSpec, Runtime, labels};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Instances per deploy.
fn instances_n() -> usize {
    mode::pick(100, 10)
}
/// Interleaved rounds.
fn rounds_n() -> usize {
    mode::pick(5, 1)
}
/// Seconds each API read is hammered.
fn read_secs_n() -> u64 {
    mode::pick(3, 1)
}
/// Node changes timed through a watch.
fn watch_n() -> usize {
    mode::pick(200, 20)
}
/// Concurrent API clients.
const CLIENTS: usize = 4;

fn main() -> Result<()> {
    mode::announce("lifecycle");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let instances = instances_n();
    let rounds = rounds_n();
    let tmp = tempfile::tempdir()?;
    // Instances outlive the kernel: whatever happens below, they go before the directory does.
    let _instances = cleanup::Instances::under(&[
        &tmp.path().join("data/runtime/process"),
        &tmp.path().join("direct"),
    ]);
    let shim = Path::new(env!("CARGO_BIN_EXE_lain"));
    let config = KernelConfig {
        data_dir: tmp.path().join("data"),
        ..KernelConfig::default()
    };
    let kernel = Kernel::open_with_shim(config, lain_builtin_plugins::BUILTINS, shim)?;
    let lc = kernel.lifecycle.clone();
    let reconciler = cleanup::Task(kernel.start_reconciler());
    let app_dir = tmp.path().join("bench");
    std::fs::create_dir_all(&app_dir)?;
    std::fs::write(
        app_dir.join("lain.yaml"),
        format!(
            "appname: bench\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  num_instances: {instances}\n  memory: 16M\n"
        ),
    )?;
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_path_with_name(app_dir.join("lain.yaml"), "lain.yaml")?;
    let context = tar.into_inner()?;
    let build_lc = lc.clone();
    tokio::task::spawn_blocking(move || build_lc.build(&context, &mut |_| {})).await??;
    let sandbox = Sandbox::new(&lain::runtime::process::Config::default(), &[])?;
    let direct = ProcessRuntime::open(&tmp.path().join("direct"), shim, sandbox.clone())?;
    let init = lain::runtime::process::sandbox::init::executable(shim);
    let release_dir = tmp.path().join("release");
    std::fs::create_dir_all(&release_dir)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = cleanup::Task(tokio::spawn(
        axum::serve(listener, lain::api::app(kernel.app_state())).into_future(),
    ));
    // Every API route but /healthz needs credentials: the local bootstrap admin's token.
    let token = std::fs::read_to_string(tmp.path().join("data/bootstrap.token"))
        .context("the kernel's bootstrap token")?;
    let token = token.trim().to_string();

    let mut plain = Vec::new();
    let mut bare = Vec::new();
    let mut runtime_only = Vec::new();
    let mut deploy = Vec::new();
    let mut cli = Vec::new();
    for round in 0..rounds {
        for variant in (0..5).map(|i| (i + round) % 5) {
            match variant {
                0 => plain.push(bench_plain()?),
                4 => bare.push(bench_sandbox(&sandbox, &init)?),
                1 => runtime_only.push(bench_runtime(&direct, &release_dir).await?),
                2 => deploy.push(bench_deploy(&lc).await?),
                _ => {
                    cli.push(bench_cli_deploy(&lc, shim, &format!("http://{addr}"), &token).await?)
                }
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let overhead: Vec<f64> = deploy
        .iter()
        .zip(&runtime_only)
        .map(|(d, r)| (d - r) / instances as f64)
        .collect();
    let vs_runtime: Vec<f64> = deploy
        .iter()
        .zip(&runtime_only)
        .map(|(d, r)| d / r)
        .collect();
    let vs_plain: Vec<f64> = deploy.iter().zip(&plain).map(|(d, p)| d / p).collect();
    let cli_vs_plain: Vec<f64> = cli.iter().zip(&plain).map(|(d, p)| d / p).collect();
    let cli_vs_runtime: Vec<f64> = cli.iter().zip(&runtime_only).map(|(d, r)| d / r).collect();
    let bare_vs_plain: Vec<f64> = bare.iter().zip(&plain).map(|(b, p)| b / p).collect();
    let runtime_vs_bare: Vec<f64> = runtime_only.iter().zip(&bare).map(|(r, b)| r / b).collect();
    let cli_vs_bare: Vec<f64> = cli.iter().zip(&bare).map(|(d, b)| d / b).collect();

    let auth = format!("Bearer {token}");
    let watch = watch_latency(&lc, &format!("http://{addr}"), &auth).await?;

    // API reads with the 100 instances running.
    lc.deploy("bench", None)?;
    wait_converged(&lc).await?;
    let health = reads(format!("http://{addr}/healthz"), &auth).await?;
    let view = reads(format!("http://{addr}/api/v1/apps/bench"), &auth).await?;
    let list = reads(format!("http://{addr}/api/v1/apps"), &auth).await?;
    server.0.abort();
    reconciler.0.abort();
    lc.stop_all().await?;

    let m = |v: &[f64]| median(v);
    let report = serde_json::json!({
        "instances": instances, "rounds": rounds,
        "plain_spawn_ms": m(&plain) * 1e3, "runtime_only_ms": m(&runtime_only) * 1e3,
        "bare_sandbox_ms": m(&bare) * 1e3, "bare_sandbox_vs_plain_spawn": m(&bare_vs_plain),
        "runtime_only_vs_bare_sandbox": m(&runtime_vs_bare),
        "cli_deploy_vs_bare_sandbox": m(&cli_vs_bare),
        "lain_deploy_ms": m(&deploy) * 1e3,
        "kernel_overhead_per_instance_ms": m(&overhead) * 1e3,
        "deploy_vs_runtime_only": m(&vs_runtime), "deploy_vs_plain_spawn": m(&vs_plain),
        "cli_deploy_ms": m(&cli) * 1e3, "cli_deploy_vs_plain_spawn": m(&cli_vs_plain),
        "cli_deploy_vs_runtime_only": m(&cli_vs_runtime),
        "watch_latency_ms": {"p50": watch.0 * 1e3, "p99": watch.1 * 1e3, "changes": watch_n()},
        "api_reads_per_s": {"healthz": health, "app_view_100_instances": view, "app_list": list},
    });
    println!(
        "## lifecycle ({instances} instances, process runtime, {rounds} interleaved rounds, medians)\n"
    );
    println!("| what | figure |\n|---|---|");
    println!(
        "| plain spawn of {instances} `sleep` | {:.1} ms |",
        m(&plain) * 1e3
    );
    println!(
        "| bare sandbox: {instances} `sleep` in lain's sandbox (bubblewrap + init), no shim | {:.1} ms: {:.2}x plain spawn |",
        m(&bare) * 1e3,
        m(&bare_vs_plain)
    );
    println!(
        "| runtime only: create + start {instances} shim-supervised instances | {:.1} ms: {:.2}x bare sandbox |",
        m(&runtime_only) * 1e3,
        m(&runtime_vs_bare)
    );
    println!(
        "| lain deploy until all {instances} run | {:.1} ms |",
        m(&deploy) * 1e3
    );
    println!(
        "| kernel's own overhead per instance | **{:.2} ms** (target < 5 ms) |",
        m(&overhead) * 1e3
    );
    println!("| lain deploy / runtime only | {:.2}x |", m(&vs_runtime));
    println!("| lain deploy / plain spawn | {:.2}x |", m(&vs_plain));
    println!(
        "| `lain deploy` CLI until it exits (all {instances} ready) | {:.1} ms: **{:.2}x** plain spawn, {:.2}x bare sandbox, {:.2}x runtime only |",
        m(&cli) * 1e3,
        m(&cli_vs_plain),
        m(&cli_vs_bare),
        m(&cli_vs_runtime)
    );
    println!(
        "| watch latency, store write to the event read by a client ({} changes) | p50 {:.2} ms, p99 {:.2} ms |",
        watch_n(),
        watch.0 * 1e3,
        watch.1 * 1e3
    );
    println!("| API `GET /healthz` ({CLIENTS} keep-alive clients) | {health:.0} req/s |");
    println!(
        "| API `GET /api/v1/apps/bench` (ps view, {instances} instances) | {view:.0} req/s ({:.2}x healthz) |",
        view / health
    );
    println!(
        "| API `GET /api/v1/apps` | {list:.0} req/s ({:.2}x healthz) |",
        list / health
    );
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(mode::report_file("lifecycle")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

/// Seconds to spawn `instances_n()` plain processes (killed afterwards, untimed).
fn bench_plain() -> Result<f64> {
    let instances = instances_n();
    let start = Instant::now();
    let mut children = cleanup::Children(Vec::with_capacity(instances));
    for _ in 0..instances {
        children
            .0
            .push(std::process::Command::new("sleep").arg("100000").spawn()?);
    }
    let took = start.elapsed().as_secs_f64();
    drop(children);
    Ok(took)
}

/// Seconds to get `instances_n()` `sleep`s running in bare sandboxes (see the module docs);
/// killed afterwards, untimed.
fn bench_sandbox(sandbox: &Sandbox, init: &Path) -> Result<f64> {
    use std::io::BufRead as _;
    let instances = instances_n();
    let start = Instant::now();
    let mut children = cleanup::Children(Vec::with_capacity(instances));
    let mut reports = Vec::with_capacity(instances);
    for _ in 0..instances {
        let (report, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let jail = Jail {
            identity: sandbox.identity("bench"),
            binds: Vec::new(),
            files: Vec::new(),
            cwd: "/".into(),
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            argv: vec!["sleep".into(), "100000".into()],
        };
        let mut cmd = sandbox.command(jail, init, Some(report_w))?;
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        children.0.push(cmd.spawn()?);
        // Only the sandbox keeps the report's write end.
        drop(cmd);
        // Bounded: init writes one short line.
        reports.push(std::io::BufReader::new(std::io::Read::take(
            std::fs::File::from(report),
            4096,
        )));
    }
    for report in &mut reports {
        let mut line = String::new();
        report.read_line(&mut line)?;
        if line.trim() != lain::runtime::process::sandbox::init::STARTED {
            bail!("bare sandbox: `sleep` did not start ({line:?})");
        }
    }
    let took = start.elapsed().as_secs_f64();
    drop(children);
    Ok(took)
}

/// Seconds to create and start `instances_n()` instances on the runtime directly.
async fn bench_runtime(rt: &ProcessRuntime, release: &Path) -> Result<f64> {
    let instances = instances_n();
    let specs: Vec<InstanceSpec> = (1..=instances)
        .map(|no| InstanceSpec {
            name: format!("direct.i{no}"),
            labels: [(labels::KERNEL.to_string(), "direct".to_string())].into(),
            image: release.to_string_lossy().into_owned(),
            entrypoint: None,
            cmd: Some(vec!["sleep".into(), "100000".into()]),
            user: None,
            env: Vec::new(),
            workdir: None,
            ports: Vec::new(),
            memory: 16 << 20,
            cpu: 0,
            log_file: release.join(format!("{no}.log")),
            aliases: Vec::new(),
            dns_search: Vec::new(),
            volumes: Vec::new(),
            volume_root: release.join("volumes"),
            cloud_volumes: Vec::new(),
            cloud_root: std::path::PathBuf::new(),
            health: None,
            secret_files: Vec::new(),
        })
        .collect();
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(&specs)
        .map(|s| async move {
            rt.create(s).await?;
            rt.start(&s.name).await
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = start.elapsed().as_secs_f64();
    for r in results {
        r?;
    }
    let running = rt.list("direct").await?;
    if running.len() != instances {
        bail!("runtime only: {} instances, not {instances}", running.len());
    }
    futures::stream::iter(&running)
        .map(|o| async move {
            rt.stop(&o.name, Duration::from_secs(5)).await?;
            rt.remove(&o.name).await
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    Ok(took)
}

/// Seconds from deploy to all instances running; then undeploys and waits, untimed.
async fn bench_deploy(lc: &Arc<lain::lifecycle::Lifecycle>) -> Result<f64> {
    let start = Instant::now();
    let deploy_lc = lc.clone();
    tokio::task::spawn_blocking(move || deploy_lc.deploy("bench", None)).await??;
    wait_converged(lc).await?;
    let took = start.elapsed().as_secs_f64();
    lc.undeploy("bench")?;
    wait_converged(lc).await?;
    Ok(took)
}

/// Seconds from running the `lain deploy` binary to its exit (it waits until the app
/// converged); then undeploys and waits, untimed.
async fn bench_cli_deploy(
    lc: &Arc<lain::lifecycle::Lifecycle>,
    lain_bin: &Path,
    kernel: &str,
    token: &str,
) -> Result<f64> {
    let mut cmd = tokio::process::Command::new(lain_bin);
    cmd.args([
        "deploy",
        "-a",
        "bench",
        "--kernel",
        kernel,
        "--timeout",
        "120",
    ])
    .env("LAIN_TOKEN", token)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    let start = Instant::now();
    let out = cmd.output().await?;
    let took = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "lain deploy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_converged(lc).await?;
    lc.undeploy("bench")?;
    wait_converged(lc).await?;
    Ok(took)
}

/// p50 and p99 seconds from a node's change in the store to its event read by a watch client.
async fn watch_latency(
    lc: &Arc<lain::lifecycle::Lifecycle>,
    kernel: &str,
    authorization: &str,
) -> Result<(f64, f64)> {
    use std::io::BufRead as _;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, String)>();
    let url = format!("{kernel}/api/v1/watch?kinds=node&format=ndjson");
    let authorization = authorization.to_string();
    // The client: reads lines and stamps them as they arrive.
    std::thread::spawn(move || -> Result<()> {
        let resp = ureq::get(&url)
            .header("Authorization", &authorization)
            .call()
            .context("watch")?;
        let reader = std::io::BufReader::new(resp.into_body().into_reader());
        for line in reader.lines() {
            if tx.send((Instant::now(), line?)).is_err() {
                break;
            }
        }
        Ok(())
    });
    // Up to the snapshot's end.
    loop {
        let (_, line) = rx.recv().await.context("the watch ended")?;
        if line.contains("\"event\":\"synced\"") {
            break;
        }
    }
    let mut node = lc
        .nodes()?
        .into_iter()
        .next()
        .context("no node to change")?;
    let mut took = Vec::with_capacity(watch_n());
    for n in 0..watch_n() {
        node.labels.insert("bench".into(), n.to_string());
        let (write_lc, record) = (lc.clone(), node.clone());
        let start = Instant::now();
        tokio::task::spawn_blocking(move || write_lc.add_node(record)).await??;
        loop {
            let (at, line) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .context("no event within 10 s")?
                .context("the watch ended")?;
            if line.contains("\"event\":\"node\"") && line.contains(&format!("\"bench\":\"{n}\"")) {
                took.push(at.duration_since(start).as_secs_f64());
                break;
            }
        }
    }
    took.sort_by(f64::total_cmp);
    let p99 = took[(took.len() * 99 / 100).min(took.len() - 1)];
    Ok((median(&took), p99))
}

async fn wait_converged(lc: &lain::lifecycle::Lifecycle) -> Result<()> {
    let instances = instances_n();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let view = lc.status().view(lc.app("bench")?);
        let running = view
            .instances
            .iter()
            .filter(|i| matches!(i.state, lain::runtime::RunState::Running { .. }))
            .count();
        let want = if view.release.is_some() { instances } else { 0 };
        if view.converged && running == want && view.instances.len() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not converged: {} running, problems {:?}",
                running,
                view.procs.first().and_then(|p| p.problem.clone())
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Requests per second on `url` from `CLIENTS` keep-alive clients over `READ_SECS`.
async fn reads(url: String, authorization: &str) -> Result<f64> {
    let read_secs = read_secs_n();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            let authorization = authorization.to_string();
            tokio::task::spawn_blocking(move || -> Result<u64> {
                let agent = ureq::Agent::new_with_defaults();
                let deadline = Instant::now() + Duration::from_secs(read_secs);
                let mut n = 0;
                while Instant::now() < deadline {
                    let mut resp = agent
                        .get(&url)
                        .header("Authorization", &authorization)
                        .call()
                        .context("API read")?;
                    resp.body_mut().read_to_vec()?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await??;
    }
    Ok(total as f64 / read_secs as f64)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

use std::future::IntoFuture;
