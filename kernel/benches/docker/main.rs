//! What deploying on Docker costs: lain against a plain shell loop of `docker run -d`.
//!
//! Run with `cargo bench -p lain --bench docker` (needs dockerd and busybox-static, as the tests;
//! the benchmark starts its own engine). Prints a markdown report and writes
//! `<target dir>/bench/docker.json`.
//!
//! # Method
//!
//! On one private engine, in interleaved rounds (order rotating), three ways of getting
//! `instances_n()` containers of the same image running `sleep`:
//! - *docker run loop*: `for i in ...; do docker run -d ...; done` in `sh`, what an operator
//!   scripting Docker would do, with the same conditions as lain's containers (a user-defined
//!   bridge network, a 32 MiB memory limit);
//! - *runtime only*: `DockerRuntime::create` + `start` of the instances, 16 at a time, without
//!   the kernel (the reconciler's default is three per core, 4 to 16);
//! - *lain deploy*: `Lifecycle::deploy` of an app with one proc of `instances_n()` instances until
//!   the reconciler sees them all running and ready (converged), also timed to the first view
//!   where all run; once per `[lifecycle] parallel_starts` in [`PARALLEL`] (a kernel each, on the
//!   same engine), so the default is measured against 16 in the same run.
//!
//! The kernel's own overhead per container is `(lain deploy - runtime only) / instances`. Where
//! the time goes: the runtime-only rounds also time each container's `create` (with its image
//! and network checks) and `start` calls, whose medians are the engine's latency per container.
//! Everything is removed between rounds, untimed. Medians over rounds; ratios are medians of
//! per-round paired ratios.

#[path = "../support/cleanup.rs"]
mod cleanup;
#[path = "../../../tests/e2e/docker_engine.rs"]
mod docker_engine;

#[path = "../support/mode.rs"]
mod mode;
use anyhow::{Result, bail};
use futures::StreamExt;
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use lain::runtime::RuntimeKind;
use lain::runtime::docker::DockerRuntime;
use lain::runtime::{InstanceSpec, Runtime, labels};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Containers per deploy.
fn instances_n() -> usize {
    mode::pick(50, 3)
}
/// Interleaved rounds.
fn rounds_n() -> usize {
    mode::pick(3, 1)
}

/// The `[lifecycle] parallel_starts` each lain-deploy variant runs with: the default (0: three
/// per core, 4 to 16) and 16, as many as the runtime-only rounds.
const PARALLEL: [usize; 2] = [0, 16];

fn main() -> Result<()> {
    mode::announce("docker");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let instances = instances_n();
    let rounds = rounds_n();
    let engine = docker_engine::DockerEngine::start();
    let tmp = tempfile::tempdir()?;
    let yaml = format!(
        "appname: bench\nbuild:\n  base: {}\n  script: []\nworker:\n  cmd: sleep 100000\n  num_instances: {instances}\n",
        docker_engine::BASE
    );
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "lain.yaml", yaml.as_bytes())?;
    let context = tar.into_inner()?;
    // One kernel per `[lifecycle] parallel_starts` compared, each with its reconciler; the
    // tasks are stopped before the engine (which removes every container when dropped).
    let mut kernels = Vec::new();
    let mut reconcilers = Vec::new();
    let mut opened = Vec::new();
    let mut image = String::new();
    for parallel in PARALLEL {
        let mut config = KernelConfig {
            data_dir: tmp.path().join(format!("data-{parallel}")),
            runtime: RuntimeKind::Docker,
            ..KernelConfig::default()
        };
        config.docker.local = engine.address.clone();
        config.lifecycle.parallel_starts = parallel;
        let starts = config.lifecycle.parallel_starts();
        let kernel = Kernel::open_with_shim(
            config,
            lain_builtin_plugins::BUILTINS,
            Path::new(env!("CARGO_BIN_EXE_lain")),
        )?;
        let lc = kernel.lifecycle.clone();
        reconcilers.push(cleanup::Task(kernel.start_reconciler()));
        tokio::time::sleep(Duration::from_millis(1500)).await; // the reconciler connects the engine
        let (build_lc, context) = (lc.clone(), context.clone());
        let release =
            tokio::task::spawn_blocking(move || build_lc.build(&context, &mut |_| {})).await??;
        image = release.image;
        kernels.push((starts, lc));
        opened.push(kernel);
    }

    let direct = DockerRuntime::new("direct", None, Arc::new(tokio::sync::Notify::new()));
    direct.sync_nodes(&[("local".into(), engine.address.clone())]);

    let (mut shell, mut runtime_only) = (Vec::new(), Vec::new());
    let mut deploys: Vec<(Vec<f64>, Vec<f64>)> =
        kernels.iter().map(|_| Default::default()).collect();
    let mut calls = Calls::default();
    let variants = 2 + kernels.len();
    for round in 0..rounds {
        for variant in (0..variants).map(|i| (i + round) % variants) {
            match variant {
                0 => shell.push(bench_shell(&engine, &image)?),
                1 => runtime_only.push(bench_runtime(&direct, &image, &mut calls).await?),
                k => {
                    let (running, converged) = bench_deploy(&kernels[k - 2].1).await?;
                    deploys[k - 2].0.push(running);
                    deploys[k - 2].1.push(converged);
                }
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    drop(reconcilers);
    let (all_run, deploy) = deploys[0].clone();
    let starts = kernels[0].0;
    let overhead: Vec<f64> = deploy
        .iter()
        .zip(&runtime_only)
        .map(|(d, r)| (d - r) / instances as f64)
        .collect();
    let vs_shell: Vec<f64> = deploy.iter().zip(&shell).map(|(d, s)| d / s).collect();
    let vs_runtime: Vec<f64> = deploy
        .iter()
        .zip(&runtime_only)
        .map(|(d, r)| d / r)
        .collect();
    let m = |v: &[f64]| median(v);
    println!(
        "## docker ({instances} containers, one engine, {rounds} interleaved rounds, medians)\n"
    );
    println!("| what | figure |\n|---|---|");
    println!(
        "| shell loop of `docker run -d` | {:.0} ms |",
        m(&shell) * 1e3
    );
    println!(
        "| runtime only: create + start, 16 at a time | {:.0} ms |",
        m(&runtime_only) * 1e3
    );
    for ((starts, _), (all_run, deploy)) in kernels.iter().zip(&deploys) {
        let vs_shell: Vec<f64> = deploy.iter().zip(&shell).map(|(d, s)| d / s).collect();
        println!(
            "| lain deploy until all run and are ready (converged), `parallel_starts` {starts} | {:.0} ms (all seen running at {:.0} ms): {:.2}x the docker run loop |",
            m(deploy) * 1e3,
            m(all_run) * 1e3,
            m(&vs_shell)
        );
    }
    println!(
        "| runtime only, one call's latency with 16 in flight: `create` (image and network checks, create) / `start` | {:.1} / {:.1} ms median, {:.1} / {:.1} ms p90 |",
        m(&calls.create) * 1e3,
        m(&calls.start) * 1e3,
        p90(&calls.create) * 1e3,
        p90(&calls.start) * 1e3
    );
    println!(
        "| lain deploy ({starts} at a time, the default here) / docker run loop | **{:.2}x** (target <= 0.5x) |",
        m(&vs_shell)
    );
    println!("| lain deploy / runtime only | {:.2}x |", m(&vs_runtime));
    println!(
        "| kernel's own overhead per container | **{:.2} ms** (target < 5 ms) |",
        m(&overhead) * 1e3
    );
    let report = serde_json::json!({
        "instances": instances, "rounds": rounds,
        "docker_run_loop_ms": m(&shell) * 1e3, "runtime_only_ms": m(&runtime_only) * 1e3,
        "lain_deploy_ms": m(&deploy) * 1e3, "lain_deploy_all_running_ms": m(&all_run) * 1e3,
        "runtime_create_call_ms": m(&calls.create) * 1e3, "runtime_start_call_ms": m(&calls.start) * 1e3,
        "deploy_vs_docker_run_loop": m(&vs_shell),
        "deploy_vs_runtime_only": m(&vs_runtime), "kernel_overhead_per_container_ms": m(&overhead) * 1e3,
        "default_parallel_starts": starts,
        "by_parallel_starts": kernels.iter().zip(&deploys).map(|((starts, _), (all_run, deploy))| {
            let vs_shell: Vec<f64> = deploy.iter().zip(&shell).map(|(d, s)| d / s).collect();
            serde_json::json!({
                "parallel_starts": starts, "lain_deploy_ms": m(deploy) * 1e3,
                "lain_deploy_all_running_ms": m(all_run) * 1e3,
                "deploy_vs_docker_run_loop": m(&vs_shell),
            })
        }).collect::<Vec<_>>(),
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(mode::report_file("docker")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

/// Seconds for the shell loop; then removes its containers, untimed.
fn bench_shell(engine: &docker_engine::DockerEngine, image: &str) -> Result<f64> {
    let instances = instances_n();
    // The same conditions as lain's containers: a bridge network of their own, a memory limit.
    let _ = engine.docker(&["network", "create", "bench-shell"]);
    let script = format!(
        "for i in $(seq {instances}); do docker -H {} run -d --label bench=shell --network bench-shell \
         --memory 32m --memory-swap 32m {image} sleep 100000 >/dev/null; done",
        engine.address
    );
    let start = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", &script])
        .status()?;
    let took = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("docker run loop failed");
    }
    let ids = engine.docker_ok(&["ps", "-aq", "--filter", "label=bench=shell"]);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.lines());
    engine.docker_ok(&args);
    Ok(took)
}

/// Seconds each runtime call took, per container.
#[derive(Default)]
struct Calls {
    create: Vec<f64>,
    start: Vec<f64>,
}

/// Seconds to create and start the containers through the runtime alone (each call's own time
/// added to `calls`); then removes them.
async fn bench_runtime(rt: &DockerRuntime, image: &str, calls: &mut Calls) -> Result<f64> {
    let instances = instances_n();
    let specs: Vec<InstanceSpec> = (1..=instances)
        .map(|no| InstanceSpec {
            name: format!("direct.i{no}"),
            labels: [
                (labels::KERNEL.to_string(), "direct".to_string()),
                (labels::APP.to_string(), "direct".to_string()),
                (labels::NODE.to_string(), "local".to_string()),
            ]
            .into(),
            image: image.to_string(),
            entrypoint: None,
            cmd: Some(vec!["sleep".into(), "100000".into()]),
            user: None,
            env: Vec::new(),
            workdir: None,
            ports: Vec::new(),
            memory: 32 << 20,
            cpu: 0,
            log_file: std::env::temp_dir().join(format!("lain-bench-{no}.log")),
            aliases: Vec::new(),
            dns_search: Vec::new(),
            volumes: Vec::new(),
            volume_root: std::env::temp_dir(),
            cloud_volumes: Vec::new(),
            cloud_root: std::path::PathBuf::new(),
            health: None,
            secret_files: Vec::new(),
        })
        .collect();
    let start = Instant::now();
    let results: Vec<_> = futures::stream::iter(&specs)
        .map(|s| async move {
            let at = Instant::now();
            rt.create(s).await?;
            let created = at.elapsed().as_secs_f64();
            let at = Instant::now();
            rt.start(&s.name).await?;
            Ok::<_, lain::runtime::RuntimeError>((created, at.elapsed().as_secs_f64()))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = start.elapsed().as_secs_f64();
    for r in results {
        let (create, start) = r?;
        calls.create.push(create);
        calls.start.push(start);
    }
    let listed = rt.list("direct").await?;
    if listed.iter().filter(|o| o.state.is_running()).count() != instances {
        bail!("runtime only: not all running");
    }
    futures::stream::iter(&listed)
        .map(|o| async move {
            rt.stop(&o.name, Duration::from_secs(1)).await?;
            rt.remove(&o.name).await
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    Ok(took)
}

/// Seconds from deploy to all seen running, and to converged (all ready); then undeploys and
/// waits, untimed.
async fn bench_deploy(lc: &Arc<lain::lifecycle::Lifecycle>) -> Result<(f64, f64)> {
    let instances = instances_n();
    let start = Instant::now();
    let deploy_lc = lc.clone();
    tokio::task::spawn_blocking(move || deploy_lc.deploy("bench", None)).await??;
    let mut all_running = None;
    wait(lc, instances, |running| {
        if running == instances && all_running.is_none() {
            all_running = Some(start.elapsed().as_secs_f64());
        }
    })
    .await?;
    let took = start.elapsed().as_secs_f64();
    lc.undeploy("bench")?;
    wait(lc, 0, |_| {}).await?;
    Ok((all_running.unwrap_or(took), took))
}

/// Waits until the app converged with `want` instances, all running; `seen` gets the number
/// running at each look.
async fn wait(
    lc: &lain::lifecycle::Lifecycle,
    want: usize,
    mut seen: impl FnMut(usize),
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let view = lc.status().view(lc.app("bench")?);
        let running = view
            .instances
            .iter()
            .filter(|i| i.state.is_running())
            .count();
        seen(running);
        if view.converged && running == want && view.instances.len() == want {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "not converged: {running} running; {:?}",
                view.procs.first().and_then(|p| p.problem.clone())
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The 90th percentile of `values`.
fn p90(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() * 9 / 10).copied().unwrap_or(f64::NAN)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
