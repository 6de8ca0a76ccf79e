//! UDP stream ports: request/response rate of one client through lain's forwarder, through
//! `socat` (`UDP4-LISTEN,fork`: a process per client, the plain baseline) and directly to the
//! echo, alternating, in the same run.

use super::{Socat, interleaved, median};
use anyhow::{Context, Result, bail};
use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Round trips per run.
fn round_trips() -> u32 {
    super::mode::pick(50_000, 500)
}

/// Bytes per datagram.
const DATAGRAM: usize = 512;

/// A UDP echo on a free port (a thread answering each datagram to its sender).
fn echo() -> Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let port = socket.local_addr()?.port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], peer);
        }
    });
    Ok(port)
}

/// Round trips per second of one new client socket to `port`, each reply checked.
fn rate(port: u16) -> Result<f64> {
    let client = UdpSocket::bind("127.0.0.1:0")?;
    client.connect(("127.0.0.1", port))?;
    client.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut sent = [0u8; DATAGRAM];
    let mut got = [0u8; 2048];
    // The first exchange sets up the forwarder's session (or socat's child); not timed.
    sent[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        client.send(&sent)?;
        if client.recv(&mut got).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!("no answer through port {port}");
        }
    }
    let n = round_trips();
    let start = Instant::now();
    for i in 0..u64::from(n) {
        sent[..8].copy_from_slice(&i.to_le_bytes());
        client.send(&sent)?;
        let len = client
            .recv(&mut got)
            .with_context(|| format!("round trip {i} through port {port}"))?;
        if got[..len] != sent[..] {
            bail!("round trip {i} through port {port}: another datagram came back");
        }
    }
    Ok(f64::from(n) / start.elapsed().as_secs_f64())
}

/// The UDP forwarder against socat and a direct exchange; prints the table and returns the
/// figures.
pub fn udp(rounds: usize) -> Result<serde_json::Value> {
    use lain::router::stream::{Protocol, StreamRouter, StreamTarget};
    let echo_port = echo()?;
    let socat_port = super::free_port()?;
    let _socat = Socat(
        Command::new("socat")
            // A child per client, ended once idle.
            .args(["-T", "30"])
            .arg(format!(
                "UDP4-LISTEN:{socat_port},bind=127.0.0.1,reuseaddr,fork"
            ))
            .arg(format!("UDP4:127.0.0.1:{echo_port}"))
            .spawn()
            .context("socat (apt-get install socat)")?,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let forwarder = StreamRouter::new("127.0.0.1");
    let lain_port = super::free_port()?;
    let target = Arc::new(StreamTarget {
        app: "bench".into(),
        proc: "echo".into(),
        destination: echo_port,
        protocol: Protocol::Udp,
        backends: vec![format!("127.0.0.1:{echo_port}")],
        draining: Vec::new(),
    });
    runtime.block_on(async {
        forwarder.set_table(std::collections::BTreeMap::from([(lain_port, target)]));
    });
    if let Some(e) = forwarder.view().iter().find_map(|v| v.error.clone()) {
        bail!("the stream forwarder cannot listen on UDP: {e}");
    }
    let [direct, socat, lain] = interleaved("udp", rounds, |path| {
        rate([echo_port, socat_port, lain_port][path])
    })?;
    let ratio = |a: &[f64], b: &[f64]| -> f64 {
        median(&a.iter().zip(b).map(|(a, b)| a / b).collect::<Vec<_>>())
    };
    println!(
        "\n## stream ports: UDP round trips of one client ({} x {DATAGRAM} B per run, loopback, {rounds} alternating rounds, medians)\n",
        round_trips()
    );
    println!("| path | round trips/s |\n|---|---|");
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
        "direct_rtps": median(&direct), "socat_rtps": median(&socat), "lain_rtps": median(&lain),
        "lain_socat_ratio": ratio(&lain, &socat), "lain_direct_ratio": ratio(&lain, &direct),
    }))
}
