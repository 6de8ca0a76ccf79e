//! Private Docker engines for tests: each a `dockerd` with its own data-root, exec-root, socket
//! and address pool, stopped (by PID) when dropped, with a busybox base image imported without
//! any registry. Fails, never skips, when dockerd is missing (`.ci/run` installs it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The base image every test app builds on.
pub const BASE: &str = "lain-test/busybox:latest";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Engines on one host share its iptables chains, and a starting dockerd rebuilds Docker's
/// network-isolation chain with only its own networks: another engine starting during a test
/// would undo that test engine's isolation. Each test holds this for its whole run, so engines of
/// different tests never overlap (a production host runs one engine).
pub fn lock_host() -> std::sync::MutexGuard<'static, ()> {
    static HOST: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HOST.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running dockerd.
pub struct DockerEngine {
    child: Child,
    /// `unix:///...` address of its API.
    pub address: String,
    dir: tempfile::TempDir,
}

impl DockerEngine {
    /// Starts a dockerd and imports [`BASE`] into it. Engines start one at a time: daemons
    /// starting together race on creating the host's iptables chains.
    pub fn start() -> DockerEngine {
        DockerEngine::start_with(&[])
    }

    /// [`DockerEngine::start`] with extra dockerd arguments.
    pub fn start_with(extra: &[String]) -> DockerEngine {
        DockerEngine::start_in(None, extra)
    }

    /// [`DockerEngine::start_with`], the daemon inside network namespace `netns` (its own
    /// interfaces, iptables and VXLAN sockets) when given. Entered with `nsenter --net` only:
    /// `ip netns exec` also remounts /sys, hiding the cgroup mounts dockerd needs ("Devices
    /// cgroup isn't mounted").
    pub fn start_in(netns: Option<&Netns>, extra: &[String]) -> DockerEngine {
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = String::new();
        for _ in 0..3 {
            match DockerEngine::try_start(netns, extra) {
                Ok(engine) => {
                    engine.import_base();
                    return engine;
                }
                Err(e) => last = e,
            }
        }
        panic!("dockerd did not start: {last}");
    }

    fn try_start(netns: Option<&Netns>, extra: &[String]) -> Result<DockerEngine, String> {
        // Socket paths must stay short (108 bytes): keep the engine under /tmp.
        let dir = tempfile::Builder::new()
            .prefix("lain-dk")
            .tempdir_in("/tmp")
            .expect("engine dir");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // A private address pool per engine, so engines on one host never overlap.
        let pool = format!(
            "base=10.{}.0.0/16,size=24",
            100 + (std::process::id() * 7 + n) % 150
        );
        let socket = dir.path().join("docker.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).expect("log");
        let mut command = match netns {
            Some(netns) => {
                // nsenter execs dockerd in place: the child's PID is the daemon's.
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{}", netns.name))
                    .arg("dockerd");
                c
            }
            None => Command::new("dockerd"),
        };
        let child = command
            .arg("--data-root")
            .arg(dir.path().join("root"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .args(["--bridge", "none", "--default-address-pool", &pool])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd starts (apt-get install docker.io)");
        let mut engine = DockerEngine {
            child,
            address: format!("unix://{}", socket.display()),
            dir,
        };
        engine.wait_ready()?;
        Ok(engine)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("dockerd exited with {status}: {}", self.log()));
            }
            if self.docker(&["version"]).status.success() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("dockerd did not answer: {}", self.log()))
    }

    /// Imports a busybox rootfs (from Debian's busybox-static) as [`BASE`].
    fn import_base(&self) {
        let rootfs = self.dir.path().join("rootfs");
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).expect("rootfs");
        for d in [
            "tmp", "etc", "proc", "sys", "dev", "root", "lain/app", "var/www",
        ] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static");
        let applets = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("applets");
        for applet in String::from_utf8_lossy(&applets.stdout).lines() {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .args(["-c", "."])
            .output()
            .expect("tar");
        let mut import = Command::new("docker")
            .args(["-H", &self.address, "import", "-", BASE])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("docker import");
        use std::io::Write;
        import
            .stdin
            .take()
            .expect("stdin")
            .write_all(&tar.stdout)
            .expect("send rootfs");
        assert!(import.wait().expect("import").success(), "import failed");
    }

    /// `docker swarm init` advertised (and listening) at `address`, overlay subnets from
    /// `pool` (a /16), VXLAN on UDP `data_port`.
    pub fn swarm_init(&self, address: &str, pool: &str, data_port: u16) {
        self.docker_ok(&[
            "swarm",
            "init",
            "--advertise-addr",
            address,
            "--listen-addr",
            &format!("{address}:2377"),
            "--data-path-addr",
            address,
            "--default-addr-pool",
            pool,
            "--default-addr-pool-mask-length",
            "24",
            "--data-path-port",
            &data_port.to_string(),
        ]);
    }

    /// Joins the swarm whose manager `manager` listens at `manager_address` as a worker,
    /// advertised at `address`.
    pub fn swarm_join(&self, manager: &DockerEngine, manager_address: &str, address: &str) {
        let token = manager.docker_ok(&["swarm", "join-token", "-q", "worker"]);
        self.docker_ok(&[
            "swarm",
            "join",
            "--token",
            token.trim(),
            "--advertise-addr",
            address,
            "--listen-addr",
            &format!("{address}:2377"),
            "--data-path-addr",
            address,
            &format!("{manager_address}:2377"),
        ]);
    }

    /// Runs the docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .args(["-H", &self.address])
            .args(args)
            .output()
            .expect("docker CLI")
    }

    /// Runs the docker CLI, asserting success; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Names of the containers labelled with `label`.
    pub fn containers(&self, label: &str) -> Vec<String> {
        self.docker_ok(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// The last lines of the engine's log.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the engine (SIGTERM; dockerd stops its containers), as a node going away looks to
    /// lain: its socket stops answering. (A SIGKILL would leave containerd, its containers and
    /// their mounts behind on the test host.)
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        // Remove what tests left, then stop the daemon cleanly so it unmounts its layers.
        let ids = self.docker(&["ps", "-aq"]);
        let ids: Vec<String> = String::from_utf8_lossy(&ids.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            let _ = self.docker(&args);
        }
        // No swarm state is left behind (a no-op for an engine in none).
        let _ = self.docker(&["swarm", "leave", "--force"]);
        // Networks go too, and with them their iptables rules on the host.
        let _ = self.docker(&["network", "prune", "-f"]);
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace joined to the host by a veth pair (a /30: the host side `.1`, the
/// namespace side `.2`), as a second machine on a link. Deleted, with its veth, when dropped
/// (after the engines in it stop).
pub struct Netns {
    /// Its name under /var/run/netns.
    pub name: String,
    host_if: String,
    /// The host side's address.
    pub host_ip: String,
    /// The namespace side's address.
    pub ns_ip: String,
}

impl Netns {
    /// Creates it; names and the 172.29.x.0/30 link are derived from the test's PID.
    pub fn create() -> Netns {
        let id = std::process::id();
        let netns = Netns {
            name: format!("lain-ov-{id}"),
            host_if: format!("lov{}h", id % 100_000),
            host_ip: format!("172.29.{}.1", id % 250),
            ns_ip: format!("172.29.{}.2", id % 250),
        };
        let ns_if = format!("lov{}n", id % 100_000);
        let run = |args: &[&str]| {
            let out = Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", netns.name.as_str(), "ip"];
            all.extend(args);
            run(&all);
        };
        run(&["netns", "add", &netns.name]);
        run(&[
            "link",
            "add",
            &netns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
        ]);
        run(&["link", "set", &ns_if, "netns", &netns.name]);
        run(&[
            "addr",
            "add",
            &format!("{}/30", netns.host_ip),
            "dev",
            &netns.host_if,
        ]);
        run(&["link", "set", &netns.host_if, "up"]);
        in_ns(&["addr", "add", &format!("{}/30", netns.ns_ip), "dev", &ns_if]);
        in_ns(&["link", "set", &ns_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        netns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A path as a string.
pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Where the busybox-static binary is.
pub fn busybox() -> PathBuf {
    PathBuf::from("/bin/busybox")
}

/// A private image registry (Debian's `docker-registry`), stopped when dropped.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free loopback port (engines trust 127.0.0.0/8 without TLS).
    pub fn start() -> Registry {
        let dir = tempfile::tempdir().expect("registry dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let address = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
                dir.path().join("data").display()
            ),
        )
        .expect("registry config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts (apt-get install docker-registry)");
        let registry = Registry {
            child,
            address,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("http://{}/v2/", registry.address))
            .call()
            .is_err()
        {
            assert!(Instant::now() < deadline, "the registry did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }

    /// The repositories it holds.
    pub fn catalog(&self) -> String {
        ureq::get(&format!("http://{}/v2/_catalog", self.address))
            .call()
            .expect("catalog")
            .body_mut()
            .read_to_string()
            .expect("body")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with `openssl` in
/// `dir`: `ca.pem`, `server.pem`, `server-key.pem`, `cert.pem`, `key.pem`.
pub fn tls_material(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    run(&["genrsa", "-out", "ca-key.pem", "2048"]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "1",
        "-key",
        "ca-key.pem",
        "-subj",
        "/CN=lain-test-ca",
        "-out",
        "ca.pem",
    ]);
    for (key, csr, cert, cn, ext) in [
        (
            "server-key.pem",
            "server.csr",
            "server.pem",
            "/CN=127.0.0.1",
            "server.ext",
        ),
        (
            "key.pem",
            "client.csr",
            "cert.pem",
            "/CN=lain",
            "client.ext",
        ),
    ] {
        run(&["genrsa", "-out", key, "2048"]);
        run(&["req", "-new", "-key", key, "-subj", cn, "-out", csr]);
        run(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            cert,
            "-extfile",
            ext,
        ]);
    }
}
