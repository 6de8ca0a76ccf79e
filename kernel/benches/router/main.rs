//! The web router against nginx, under `wrk`, on loopback.
//!
//! Run with `cargo bench -p lain --bench router` (needs nginx and wrk). Prints a markdown report
//! and writes `<target dir>/bench/router.json`.
//!
//! # Method
//!
//! One backend: an nginx answering `ok` (a separate process, fast enough that the proxies are
//! what is measured). In front of it, in the same run: lain's router (`WebRouter` served by
//! `router::server`, in this process, 2 worker threads, access log on) and an nginx reverse proxy
//! (2 workers, upstream keep-alive, the configuration `lain router nginx-config` generates,
//! buffered access log on). `wrk -t2 -c32 -d5s` runs against each, alternating, for `rounds_n()`
//! rounds. Reported: requests/s and p99 latency (medians over rounds), and lain/nginx ratios
//! (medians of per-round ratios).
//!
//! Stream ports, in the same run: TCP throughput of one connection sending `stream_bytes()` to a
//! sink (a thread that counts what it reads and answers the count once the sender shuts down),
//! directly, through `socat` (`TCP-LISTEN,fork` to the sink, 64 KiB buffer as the forwarder's:
//! the plain baseline), and through
//! lain's stream forwarder (`router::stream`, on a 2-thread tokio runtime as in the kernel),
//! alternating for `rounds_n()` rounds. Reported: MB/s (medians) and lain/socat and
//! lain/direct ratios (medians of per-round ratios).
//!
//! UDP stream ports, in the same run ([`udp`]): round trips per second of one client exchanging
//! 512-byte datagrams with an echo, directly, through `socat` (`UDP4-LISTEN,fork`) and through
//! the forwarder, alternating for `rounds_n()` rounds; the same medians and ratios.

#[path = "../support/mode.rs"]
mod mode;
mod udp;
use anyhow::{Context, Result, bail};

/// The allocator the `lain` binary uses, so the router is measured as it runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use lain::router::WebRouter;
use lain::router::table::{Route, RouteTable};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Alternating rounds.
fn rounds_n() -> usize {
    mode::pick(5, 1)
}
/// Seconds per wrk run.
fn seconds_n() -> u32 {
    mode::pick(5, 1)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// An nginx with `http_block` in its `http` context, stopped when dropped (with its directory).
struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// `log`: write a buffered access log, as the router writes its own.
    fn start(http_block: &str, log: bool) -> Result<Nginx> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("tmp"))?;
        let access_log = if log {
            "access_log access.log combined buffer=64k flush=1s;"
        } else {
            "access_log off;"
        };
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nworker_processes 2;\npid nginx.pid;\nerror_log stderr error;\n\
                 events {{ worker_connections 4096; }}\n\
                 http {{\n {access_log}\n client_body_temp_path tmp;\n proxy_temp_path tmp;\n\
                 fastcgi_temp_path tmp;\n uwsgi_temp_path tmp;\n scgi_temp_path tmp;\n{http_block}\n}}\n"
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .args(["-c", "nginx.conf"])
            .spawn()
            .context("nginx (apt-get install nginx-light)")?;
        Ok(Nginx { child, _dir: dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn wait_port(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// (requests/s, p99 ms) of wrk against `port` with `Host: bench.local`.
fn wrk(port: u16) -> Result<(f64, f64)> {
    let seconds = seconds_n();
    let out = Command::new("wrk")
        .args([
            "-t2",
            "-c32",
            &format!("-d{seconds}s"),
            "--latency",
            "-H",
            "Host: bench.local",
        ])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("wrk output: {text}"))?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| millis(v.trim()))
        .with_context(|| format!("wrk output: {text}"))??;
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("errors under load: {text}");
    }
    Ok((rps, p99))
}

/// `1.23ms`, `850.00us`, `1.02s` -> milliseconds.
fn millis(v: &str) -> Result<f64> {
    let (number, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else {
        bail!("latency {v}")
    };
    Ok(number.parse::<f64>()? * factor)
}

fn main() -> Result<()> {
    mode::announce("router");
    let rounds = rounds_n();
    let seconds = seconds_n();
    let backend_port = free_port()?;
    let _backend = Nginx::start(
        &format!(
            "server {{ listen 127.0.0.1:{backend_port}; location / {{ return 200 \"ok\\n\"; }} }}"
        ),
        false,
    )?;
    wait_port(backend_port)?;

    // lain's router, with the route `lain router nginx-config` also exports.
    let route = Route::new("/", "bench/web", vec![format!("127.0.0.1:{backend_port}")]);
    let table = RouteTable::from_routes([("bench.local".to_string(), route)]);
    let front_nginx_port = free_port()?;
    let snippet = lain::router::nginx::render(&table, &format!("127.0.0.1:{front_nginx_port}"));
    let _front = Nginx::start(&snippet, true)?;
    wait_port(front_nginx_port)?;

    let logs = tempfile::tempdir()?;
    let config = lain::router::Config::default();
    let router = Arc::new(WebRouter::new(&config, logs.path())?);
    router.set_table(table);
    let server = lain::router::server::serve(
        router.clone(),
        lain::router::server::Listen {
            http: "127.0.0.1:0".into(),
            https: None,
            workers: std::env::var("LAIN_BENCH_WORKERS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
        },
    )?;
    let router_port = server.http.port();
    wait_port(router_port)?;

    let (mut lain_rps, mut lain_p99, mut nginx_rps, mut nginx_p99) =
        (vec![], vec![], vec![], vec![]);
    wrk(router_port)?; // warm both pools
    wrk(front_nginx_port)?;
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for lain_first in order {
            if lain_first {
                let (r, p) = wrk(router_port)?;
                lain_rps.push(r);
                lain_p99.push(p);
            } else {
                let (r, p) = wrk(front_nginx_port)?;
                nginx_rps.push(r);
                nginx_p99.push(p);
            }
        }
        eprintln!("round {}/{rounds} done", round + 1);
    }
    let m = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rps_ratio: Vec<f64> = lain_rps
        .iter()
        .zip(&nginx_rps)
        .map(|(l, n)| l / n)
        .collect();
    let p99_ratio: Vec<f64> = lain_p99
        .iter()
        .zip(&nginx_p99)
        .map(|(l, n)| l / n)
        .collect();
    println!(
        "## router vs nginx (wrk -t2 -c32 -d{seconds}s, loopback, {rounds} alternating rounds, medians)\n"
    );
    println!("| what | lain router | nginx | lain / nginx |\n|---|---|---|---|");
    println!(
        "| requests/s | {:.0} | {:.0} | **{:.2}x** (target >= 0.9x) |",
        m(&lain_rps),
        m(&nginx_rps),
        m(&rps_ratio)
    );
    println!(
        "| p99 latency | {:.2} ms | {:.2} ms | **{:.2}x** (target <= 1.2x) |",
        m(&lain_p99),
        m(&nginx_p99),
        m(&p99_ratio)
    );
    let streams = streams(rounds)?;
    let udp = udp::udp(rounds)?;
    let report = serde_json::json!({
        "lain_rps": m(&lain_rps), "nginx_rps": m(&nginx_rps), "rps_ratio": m(&rps_ratio),
        "lain_p99_ms": m(&lain_p99), "nginx_p99_ms": m(&nginx_p99), "p99_ratio": m(&p99_ratio),
        "streams": streams, "udp_streams": udp,
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(mode::report_file("router")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}

/// Bytes each stream-throughput run sends.
fn stream_bytes() -> u64 {
    mode::pick(1 << 30, 32 << 20)
}

/// `rounds` rounds measuring each of three paths once, in an order rotated every round (so no
/// path always runs first, on a cold or warm machine); each path's figures.
fn interleaved(
    label: &str,
    rounds: usize,
    mut measure: impl FnMut(usize) -> Result<f64>,
) -> Result<[Vec<f64>; 3]> {
    let mut figures: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        let mut order = [0, 1, 2];
        order.rotate_left(round % 3);
        for path in order {
            figures[path].push(measure(path)?);
        }
        eprintln!("{label} round {}/{rounds} done", round + 1);
    }
    Ok(figures)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A sink on a free port: each connection is read to its end, then told how many bytes came.
fn sink() -> Result<u16> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = conn.write_all(&total.to_le_bytes());
            });
        }
    });
    Ok(port)
}

/// MB/s of one connection to `port` sending `stream_bytes()`, checked to have all arrived.
fn throughput(port: u16) -> Result<f64> {
    use std::io::{Read, Write};
    let total = stream_bytes();
    let chunk = vec![7u8; 256 << 10];
    let start = Instant::now();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port))?;
    let mut sent = 0u64;
    while sent < total {
        let n = chunk.len().min((total - sent) as usize);
        conn.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    conn.read_exact(&mut count).context("the sink's count")?;
    let elapsed = start.elapsed().as_secs_f64();
    let got = u64::from_le_bytes(count);
    if got != total {
        bail!("the sink got {got} of {total} bytes");
    }
    Ok(total as f64 / 1e6 / elapsed)
}

/// socat forwarding a free port to `to`, stopped when dropped.
struct Socat(Child);

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stream-port forwarder against socat and a direct connection; prints the table and returns
/// the figures.
fn streams(rounds: usize) -> Result<serde_json::Value> {
    use lain::router::stream::{StreamRouter, StreamTarget};
    let sink_port = sink()?;
    let socat_port = free_port()?;
    let _socat = Socat(
        Command::new("socat")
            // The forwarder's buffer size (socat's default is 8 KiB).
            .args(["-b", "65536"])
            .arg(format!(
                "TCP-LISTEN:{socat_port},bind=127.0.0.1,reuseaddr,fork"
            ))
            .arg(format!("TCP:127.0.0.1:{sink_port}"))
            .spawn()
            .context("socat (apt-get install socat)")?,
    );
    wait_port(socat_port)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let forwarder = StreamRouter::new("127.0.0.1");
    let lain_port = free_port()?;
    let target = Arc::new(StreamTarget {
        app: "bench".into(),
        proc: "echo".into(),
        destination: sink_port,
        protocol: lain::router::stream::Protocol::Tcp,
        backends: vec![format!("127.0.0.1:{sink_port}")],
        draining: Vec::new(),
    });
    runtime.block_on(async {
        forwarder.set_table(std::collections::BTreeMap::from([(lain_port, target)]));
    });
    if let Some(e) = forwarder.view().iter().find_map(|v| v.error.clone()) {
        bail!("the stream forwarder cannot listen: {e}");
    }
    wait_port(lain_port)?;
    let [direct, socat, lain] = interleaved("stream", rounds, |path| {
        throughput([sink_port, socat_port, lain_port][path])
    })?;
    let ratio = |a: &[f64], b: &[f64]| -> f64 {
        median(&a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>())
    };
    let mib = stream_bytes() >> 20;
    println!(
        "\n## stream ports: TCP throughput of one connection ({mib} MiB per run, loopback, {rounds} alternating rounds, medians)\n"
    );
    println!("| path | MB/s |\n|---|---|");
    println!("| direct (no forwarder) | {:.0} |", median(&direct));
    println!("| socat | {:.0} |", median(&socat));
    println!("| lain stream forwarder | {:.0} |", median(&lain));
    println!(
        "\nlain / socat: **{:.2}x**; lain / direct: **{:.2}x**",
        ratio(&lain, &socat),
        ratio(&lain, &direct)
    );
    drop(runtime);
    Ok(serde_json::json!({
        "direct_mbps": median(&direct), "socat_mbps": median(&socat), "lain_mbps": median(&lain),
        "lain_socat_ratio": ratio(&lain, &socat), "lain_direct_ratio": ratio(&lain, &direct),
    }))
}
