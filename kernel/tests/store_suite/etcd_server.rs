//! A private etcd server for one test: free loopback ports, a temp data dir, killed on drop.
#![allow(dead_code)] // each user takes the part it needs

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's etcd-server package puts the server.
const ETCD: &str = "/usr/bin/etcd";

/// A running etcd, killed (by PID) when dropped.
pub struct EtcdServer {
    child: Child,
    /// The client URL, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
    dir: tempfile::TempDir,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts clients. Fails, never skips, without etcd.
    pub fn start() -> Result<EtcdServer, Box<dyn std::error::Error>> {
        let binary = if Path::new(ETCD).exists() {
            ETCD
        } else {
            "etcd"
        };
        let mut last = String::new();
        // A free port can be taken between probing and etcd binding it: try again then.
        for _ in 0..3 {
            let (client, peer) = (free_port()?, free_port()?);
            let dir = tempfile::tempdir()?;
            let log = std::fs::File::create(dir.path().join("etcd.log"))?;
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(binary)
                .args(["--name", "test", "--data-dir"])
                .arg(dir.path().join("data"))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &format!("test={peer_url}")])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .map_err(|e| {
                    format!("cannot run {binary} ({e}): run scripts/setup (installs etcd-server)")
                })?;
            let mut server = EtcdServer {
                child,
                endpoint: client_url,
                dir,
            };
            match server.wait_ready(client) {
                Ok(()) => return Ok(server),
                Err(e) => last = e,
            }
        }
        Err(format!("etcd did not start: {last}").into())
    }

    /// Waits until the client port accepts connections, or etcd exits.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("etcd.log"));
                return Err(format!(
                    "etcd exited ({status}): {}",
                    log.unwrap_or_default()
                ));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("etcd did not listen within 30 s".into())
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One member of an [`EtcdCluster`].
struct Member {
    name: String,
    child: Option<Child>,
    client: u16,
    peer: u16,
}

/// A private etcd cluster of several members on free loopback ports, each member stopped and
/// started again at will (same data dir, same ports); every member is killed when dropped.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster answers a write.
    pub fn start(n: usize) -> Result<EtcdCluster, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                child: None,
                client: free_port()?,
                peer: free_port()?,
            });
        }
        let mut cluster = EtcdCluster { members, dir };
        for i in 0..n {
            cluster.start_member(i)?;
        }
        for i in 0..n {
            cluster.wait_listening(i)?;
        }
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// Kills member `i` (SIGKILL).
    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its data dir and waits until it listens.
    pub fn restart_member(&mut self, i: usize) -> Result<(), Box<dyn std::error::Error>> {
        self.start_member(i)?;
        self.wait_listening(i)
    }

    fn start_member(&mut self, i: usize) -> Result<(), Box<dyn std::error::Error>> {
        let binary = if Path::new(ETCD).exists() {
            ETCD
        } else {
            "etcd"
        };
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{}.log", m.name)))?;
        let client_url = format!("http://127.0.0.1:{}", m.client);
        let peer_url = format!("http://127.0.0.1:{}", m.peer);
        let child = Command::new(binary)
            .args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.path().join(&m.name))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", "lain-test"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run {binary} ({e}): run scripts/setup (installs etcd-server)")
            })?;
        self.members[i].child = Some(child);
        Ok(())
    }

    fn wait_listening(&mut self, i: usize) -> Result<(), Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = self.members[i].client;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.members[i].child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(self.dir.path().join(format!("m{i}.log")));
                return Err(
                    format!("etcd m{i} exited ({status}): {}", log.unwrap_or_default()).into(),
                );
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("etcd m{i} did not listen within 30 s").into())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}
