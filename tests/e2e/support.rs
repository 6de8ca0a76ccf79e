//! A real `lain serve` process for end-to-end tests, and running the real `lain` CLI against it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `lain` binary under test.
pub fn lain_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lain")
}

/// A kernel process on a free loopback port, killed (by PID) when dropped.
pub struct KernelProcess {
    child: Option<Child>,
    /// Base URL of its API.
    pub url: String,
    /// `127.0.0.1:<port>` of its web router.
    pub router: String,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
    /// Where its logs go.
    pub log: PathBuf,
    /// The token the CLI sends (`LAIN_TOKEN`); none: the CLI finds the local bootstrap token.
    pub cli_token: Option<String>,
    /// Extra environment of the kernel process.
    pub env: Vec<(String, String)>,
    /// The uid (and gid) the kernel runs as, when not the test's.
    pub user: Option<u32>,
}

impl KernelProcess {
    /// Starts a kernel on `data_dir` with `config` (TOML) and waits until `/healthz` answers.
    pub fn start(data_dir: &Path, config: &str) -> KernelProcess {
        KernelProcess::start_with_env(data_dir, config, &[])
    }

    /// [`KernelProcess::start`] with `env` added to the kernel's environment (on every start).
    pub fn start_with_env(data_dir: &Path, config: &str, env: &[(&str, &str)]) -> KernelProcess {
        KernelProcess::start_with(data_dir, config, env, None)
    }

    /// [`KernelProcess::start_with_env`], the kernel running as uid and gid `user` (which owns
    /// `data_dir`, with the compiled plugins copied into it) when given.
    pub fn start_with(
        data_dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        user: Option<u32>,
    ) -> KernelProcess {
        let mut port = free_port();
        let config_path = data_dir.join("lain.toml");
        // Compiled plugins are cached across tests (keyed by hash and engine) to keep them fast.
        let shared = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
        std::fs::create_dir_all(data_dir).expect("data dir");
        let cache = match user {
            None => shared,
            Some(uid) => {
                let own = data_dir.join("cache");
                std::fs::create_dir_all(&own).expect("cache dir");
                for entry in std::fs::read_dir(&shared).into_iter().flatten().flatten() {
                    let _ = std::fs::copy(entry.path(), own.join(entry.file_name()));
                }
                let status = Command::new("chown")
                    .args(["-R", &format!("{uid}:{uid}")])
                    .arg(data_dir)
                    .status()
                    .expect("chown");
                assert!(status.success(), "chown {}", data_dir.display());
                own
            }
        };
        std::fs::write(
            &config_path,
            format!("cache_dir = {:?}\n{config}", cache.display().to_string()),
        )
        .expect("config");
        let mut kernel = KernelProcess {
            child: None,
            url: format!("http://127.0.0.1:{port}"),
            router: format!("127.0.0.1:{}", free_port()),
            data_dir: data_dir.to_path_buf(),
            config: config_path,
            log: data_dir.join("kernel.log"),
            cli_token: None,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            user,
        };
        // The ports were free when picked, but another test's process (a container's published
        // port, a router) may take one before the kernel binds it: pick new ones then.
        for _ in 0..4 {
            match kernel.try_spawn(port) {
                Err(e) if e.contains("Address already in use") => {
                    port = free_port();
                    let _ = std::fs::write(&kernel.log, "");
                    kernel.url = format!("http://127.0.0.1:{port}");
                    kernel.router = format!("127.0.0.1:{}", free_port());
                }
                result => {
                    result.unwrap_or_else(|e| panic!("{e}"));
                    return kernel;
                }
            }
        }
        panic!("lain serve found no free ports: {}", kernel.logs());
    }

    fn spawn(&mut self, port: u16) {
        self.try_spawn(port).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_spawn(&mut self, port: u16) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(lain_bin());
        if let Some(uid) = self.user {
            std::os::unix::process::CommandExt::uid(&mut cmd, uid);
            std::os::unix::process::CommandExt::gid(&mut cmd, uid);
        }
        let child = cmd
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config)
            .env("LAIN_LOG", "info")
            .env("LAIN_ROUTER_LISTEN", &self.router)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start lain serve");
        self.child = Some(child);
        self.wait_healthy()
    }

    /// The kernel process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits up to `within` for the kernel process to exit (after a signal the test sent);
    /// its exit status, or `None` if it still runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.as_mut().map(Child::try_wait) {
                None | Some(Err(_)) => return None,
                Some(Ok(Some(status))) => {
                    self.child = None;
                    return Some(status);
                }
                Some(Ok(None)) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        None
    }

    /// Kills the kernel with SIGKILL (no clean shutdown), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the kernel again on the same data dir and port.
    pub fn restart(&mut self) {
        self.kill9();
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.spawn(port);
    }

    fn wait_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("lain serve exited with {status}: {}", self.logs()));
            }
            if ureq::get(&format!("{}/healthz", self.url)).call().is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "lain serve did not become healthy: {}",
            self.logs()
        ))
    }

    /// The kernel's log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the `lain` CLI against this kernel, as the local bootstrap admin (the CLI finds
    /// the token through `LAIN_DATA_DIR`, as documented), with its own user config file.
    pub fn lain(&self, args: &[&str]) -> Output {
        self.lain_cmd(args).output().expect("run lain")
    }

    /// The CLI command [`KernelProcess::lain`] runs, to add to.
    pub fn lain_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(lain_bin());
        cmd.args(args)
            .env("LAIN_KERNEL", &self.url)
            .env("LAIN_DATA_DIR", &self.data_dir)
            .env("LAIN_USER_CONFIG", self.data_dir.with_extension("cli.toml"))
            .env_remove("LAIN_TOKEN");
        if let Some(token) = &self.cli_token {
            cmd.env("LAIN_TOKEN", token);
        }
        cmd
    }

    /// The local bootstrap (admin) token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("bootstrap.token"))
            .expect("bootstrap token")
            .trim()
            .to_string()
    }

    /// Calls the API with `token` (none: anonymous); the status and the body.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        macro_rules! send {
            ($req:expr) => {{
                let mut req = $req;
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                match body {
                    Some(b) => req.header("content-type", "application/json").send(b),
                    None => req.send_empty(),
                }
            }};
        }
        let resp = match method {
            "GET" => {
                let mut req = agent.get(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            "DELETE" => {
                let mut req = agent.delete(&url);
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            "POST" => send!(agent.post(&url)),
            "PUT" => send!(agent.put(&url)),
            "PATCH" => send!(agent.patch(&url)),
            other => panic!("method {other}"),
        };
        let mut resp = resp.expect("request");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    }

    /// Runs the CLI, asserting success, and returns its stdout.
    pub fn lain_ok(&self, args: &[&str]) -> String {
        let out = self.lain(args);
        assert!(
            out.status.success(),
            "lain {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `lain status -o json`: this kernel's part in the cluster.
    pub fn status(&self) -> serde_json::Value {
        json(&self.lain_ok(&["status", "-o", "json"]))
    }

    /// Polls [`KernelProcess::status`] until `check` holds (30 s at most); the status then.
    pub fn wait_status(
        &self,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            if check(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {s:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Copies this kernel's master key into the data dir `data` (created if needed), as every
    /// other kernel of its store needs (docs/security.md).
    pub fn share_key(&self, data: &Path) {
        std::fs::create_dir_all(data).expect("data dir");
        std::fs::copy(self.data_dir.join("vault.key"), data.join("vault.key")).expect("copy key");
    }

    /// `lain ps -a app -o json`.
    pub fn ps(&self, app: &str) -> serde_json::Value {
        json(&self.lain_ok(&["ps", "-a", app, "-o", "json"]))
    }

    /// Polls `lain ps` until `check` holds, or panics with the last view and the kernel's log.
    pub fn wait_for(
        &self,
        app: &str,
        what: &str,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let view = self.ps(app);
            if check(&view) {
                return view;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}: {view:#}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `lain node add <name> --address <address> --memory 4G`, with a `--label` per label.
    pub fn add_node(&self, name: &str, address: &str, labels: &[&str]) {
        let mut args = vec!["node", "add", name, "--address", address, "--memory", "4G"];
        for label in labels {
            args.extend(["--label", label]);
        }
        self.lain_ok(&args);
    }

    /// Runs the CLI, asserting failure, and returns its stderr.
    pub fn lain_err(&self, args: &[&str]) -> String {
        let out = self.lain(args);
        assert!(
            !out.status.success(),
            "lain {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        self.kill9();
        kill_instances(&self.data_dir);
    }
}

/// Writes `yaml` as `<root>/<name>/lain.yaml` and returns the app's directory.
pub fn write_app(root: &Path, name: &str, yaml: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir app");
    std::fs::write(dir.join("lain.yaml"), yaml).expect("write lain.yaml");
    dir
}

/// Rewrites the `lain.yaml` of the app in `dir` with `edit`.
pub fn edit_app(dir: &Path, edit: impl FnOnce(String) -> String) {
    let path = dir.join("lain.yaml");
    let yaml = std::fs::read_to_string(&path).expect("read lain.yaml");
    std::fs::write(&path, edit(yaml)).expect("write lain.yaml");
}

/// Kills every process-runtime instance under `data_dir` (they outlive the kernel by design).
pub fn kill_instances(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("runtime/process")) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = std::fs::read_to_string(entry.path().join("pid"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_i64());
        if let Some(pid) = pid {
            // The instance runs in a process group of its own, led by `pid`.
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Parses CLI output as JSON, or panics showing it.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The instances of `proc` in a `lain ps -o json` view.
pub fn instances<'a>(view: &'a serde_json::Value, proc: &str) -> Vec<&'a serde_json::Value> {
    view["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["proc"] == proc)
        .collect()
}

/// GET `url`, the body as text, or panic.
pub fn get(url: &str) -> String {
    ureq::get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// GET `url` with `Authorization: Bearer <token>`, the body as text, or panic.
pub fn get_as(url: &str, token: &str) -> String {
    ureq::get(url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// Runs `openssl` with `args` in `dir` (certificates for TLS tests), or panics with its stderr.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The first `Some` of `check`, polled for up to 90 s; panics naming `what` after that.
pub fn until<T>(what: &str, check: impl Fn() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
