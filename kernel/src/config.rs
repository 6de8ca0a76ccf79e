//! The kernel's configuration: one TOML file, every key optional, environment overrides.
//!
//! ```toml
//! data_dir = "/var/lib/lain"          # LAIN_DATA_DIR
//! listen = "127.0.0.1:7070"           # LAIN_LISTEN
//! domains = ["lain.local"]            # cluster domains; the first is the main one
//! runtime = "process"                 # LAIN_RUNTIME: where instances run
//!
//! [store]                             # where state lives
//! backend = "embedded"                # LAIN_STORE: `embedded` (redb in data_dir) or `etcd`
//! endpoints = ["http://127.0.0.1:2379"]   # LAIN_ETCD_ENDPOINTS (comma-separated), for etcd
//! prefix = "/lain/"                   # every key under this prefix, for etcd
//!
//! [lifecycle]
//! rollout_timeout_secs = 120          # a new instance not ready by then fails the rollout
//!
//! [router]                            # web traffic to web procs
//! listen = "127.0.0.1:8080"           # LAIN_ROUTER_LISTEN
//! https_listen = "127.0.0.1:8443"     # LAIN_ROUTER_HTTPS_LISTEN; needs certificates
//! drain_ms = 1000                     # an instance takes no traffic this long before it stops
//! workers = 0                         # router threads; 0 = one per core
//! access_log = true                   # <data_dir>/logs/<app>/<proc>/access.log
//! health = { interval_ms = 3000, timeout_ms = 1000, rise = 2, fall = 5 }  # active checks
//! [[router.certificates]]             # the first one valid for the SNI name, else the first
//! cert = "/etc/lain/tls/lain.local.pem"   # PEM chain, leaf first
//! key = "/etc/lain/tls/lain.local.key"
//!
//! [process]                           # with runtime = "process": the sandbox (bubblewrap)
//! bwrap = "bwrap"                     # the bubblewrap executable
//! uid_base = 1879048192               # kernel as root: app A runs as uid and gid
//! uid_count = 65536                   #   uid_base + sha256(A) % uid_count (1: one uid for all)
//! system_dirs = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc"]
//!
//! [docker]                            # with runtime = "docker"
//! local = "unix:///var/run/docker.sock"   # LAIN_DOCKER_HOST: the engine of node `local`
//! tls = { ca = "/etc/lain/ca.pem", cert = "/etc/lain/cert.pem", key = "/etc/lain/key.pem" }
//! registry = "registry.lain.local:5000"   # releases are pushed here, nodes pull from it
//!
//! [plugins.limits]                    # every plugin call runs under these
//! cpu_ms = 200
//! wall_ms = 2000
//! memory_bytes = 67108864
//! log_lines_per_sec = 100             # per plugin; the rest are dropped and counted
//!
//! [plugins.config.jwt]                # merged over the plugin's manifest defaults
//! issuer = "https://sso.example.org"
//! audience = "lain"
//! files = { jwks = "/etc/lain/jwks.json" }   # the only way a plugin is granted a file
//!
//! [proc_types]                        # proc type -> plugin serving it (default: the one plugin
//! cron = "my-cron"                    # describing it; built-in types: the built-in plugin)
//!
//! [scheduler]
//! plugins = ["resources", "constraint", "spread"]   # run in this order
//! weights = { spread = 1 }
//!
//! [auth]
//! providers = ["token", "jwt"]        # asked in this order
//! admin_groups = ["admins"]           # principals in these groups are cluster admins
//! admin_users = []                    # ... and these `provider:subject`s (e.g. "jwt:carol")
//! register_groups = ["developers"]    # besides admins, these may register new apps
//! register_users = ["jwt:alice"]      # ... and these `provider:subject`s (default: nobody)
//! metrics_groups = ["monitoring"]     # principals in these groups may read pull exporters
//! metrics_users = ["token:prometheus"]   # ... and these `provider:subject`s (admins always may)
//! bootstrap = true                    # embedded store only: <data_dir>/bootstrap.token is admin
//! audit_keep = 20000                  # newest audit records kept
//!
//! [secrets]
//! key_file = "/etc/lain/vault.key"    # the master key (64 hex digits); default <data_dir>/vault.key
//!
//! [monitor.exporters.prometheus]     # exporter plugins in use, and where their output goes:
//! pull = "/metrics"                   # served here to holders of the `metrics` right
//! [monitor.exporters.graphite]
//! push = "graphite.lain.local:2003"   # or sent here over TCP every `interval` seconds
//! interval = 60
//!
//! [backup]
//! hook = "archive"                   # not yet run by the kernel: no backup runs yet
//! ```

use crate::plugin::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The local bootstrap token's file name in the data dir.
pub const BOOTSTRAP_TOKEN_FILE: &str = "bootstrap.token";

/// The whole configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KernelConfig {
    /// Where the state store and caches live.
    pub data_dir: PathBuf,
    /// Address of the platform API.
    pub listen: String,
    /// Compiled-plugin cache; default `<data_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Cluster domains (the first is the main one): web procs' default mountpoints.
    pub domains: Vec<String>,
    /// Where instances run.
    pub runtime: RuntimeKind,
    /// Where state lives.
    pub store: StoreConfig,
    /// Deploys and rollouts.
    pub lifecycle: LifecycleConfig,
    /// The process runtime's sandbox.
    pub process: ProcessConfig,
    /// The Docker runtime's engines.
    pub docker: DockerConfig,
    /// The web router.
    pub router: RouterConfig,
    /// Plugin limits and per-plugin configuration.
    pub plugins: PluginsConfig,
    /// Which plugin serves each proc type: the one way to give a plugin a type another plugin
    /// serves, or a built-in type. Without an entry, a type is served by the one enabled plugin
    /// describing it (a built-in type by its built-in plugin).
    pub proc_types: BTreeMap<String, String>,
    /// The scheduling pipeline.
    pub scheduler: SchedulerConfig,
    /// The authentication chain, cluster admins and the audit log.
    pub auth: AuthConfig,
    /// Secret files (the vault).
    pub secrets: SecretsConfig,
    /// Monitoring exporters.
    pub monitor: MonitorConfig,
    /// Backups.
    pub backup: BackupConfig,
    /// The file this configuration was loaded from (hidden from every sandbox).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

/// The runtime instances run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Supervised local processes (the embedded default).
    #[default]
    Process,
    /// Containers on Docker engines, one per node.
    Docker,
}

/// `[router]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterConfig {
    /// Where web traffic is accepted (`LAIN_ROUTER_LISTEN`).
    pub listen: String,
    /// Where HTTPS is accepted (`LAIN_ROUTER_HTTPS_LISTEN`); needs `certificates`.
    pub https_listen: Option<String>,
    /// Milliseconds an instance takes no new traffic before it is stopped.
    pub drain_ms: u64,
    /// Router threads, each with its own listener and connection pools; 0 means one per core.
    pub workers: usize,
    /// Write an access log per web proc into the log store.
    pub access_log: bool,
    /// The router's active health checks of instances with a `healthcheck` path.
    pub health: RouterHealthConfig,
    /// Certificates for HTTPS.
    pub certificates: Vec<CertificateConfig>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            listen: "127.0.0.1:8080".into(),
            https_listen: None,
            drain_ms: 1000,
            workers: 0,
            access_log: true,
            health: RouterHealthConfig::default(),
            certificates: Vec::new(),
        }
    }
}

/// `[router.health]`: LAIN's webrouter checks (`interval=3000 rise=2 fall=5 timeout=1000`, a 2xx
/// or 3xx answer to `GET <healthcheck>` is alive).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterHealthConfig {
    /// Milliseconds between two checks of an instance; 0 disables active checks.
    pub interval_ms: u64,
    /// Milliseconds before a check counts as failed.
    pub timeout_ms: u64,
    /// Consecutive successes that put an instance back.
    pub rise: u32,
    /// Consecutive failures that take an instance out.
    pub fall: u32,
}

impl Default for RouterHealthConfig {
    fn default() -> Self {
        RouterHealthConfig {
            interval_ms: 3000,
            timeout_ms: 1000,
            rise: 2,
            fall: 5,
        }
    }
}

/// `[[router.certificates]]`: a PEM certificate chain and its private key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// The chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[process]`: how the process runtime confines builds, instances and command probes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProcessConfig {
    /// The bubblewrap executable (a bare name is looked up in `PATH`).
    pub bwrap: PathBuf,
    /// When the kernel runs as root, app `A` runs as uid and gid
    /// `uid_base + sha256(A) % uid_count`: one unprivileged id per app, the same on every start.
    /// The default range is one systemd leaves unused (above the container ranges).
    pub uid_base: u32,
    /// How many ids apps are spread over (1: every app runs as `uid_base`).
    pub uid_count: u32,
    /// Host directories every sandbox sees read-only at the same path (symlinks stay symlinks,
    /// missing ones are skipped); anything of the kernel under them is hidden.
    pub system_dirs: Vec<PathBuf>,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        ProcessConfig {
            bwrap: PathBuf::from("bwrap"),
            uid_base: 0x7000_0000,
            uid_count: 0x1_0000,
            system_dirs: [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
        }
    }
}

/// `[docker]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The engine of node `local` (and of nodes added with address `local`).
    pub local: String,
    /// Client certificates for engines reached at `tcp://` addresses.
    pub tls: Option<crate::runtime::docker::engine::TlsFiles>,
    /// A registry (`host:port`) releases are pushed to and nodes pull from; without one, a
    /// node's engine gets a missing image copied from an engine that has it.
    pub registry: Option<String>,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            local: "unix:///var/run/docker.sock".into(),
            tls: None,
            registry: None,
        }
    }
}

/// `[store]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` or `etcd`.
    pub backend: StoreBackend,
    /// etcd endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix in etcd.
    pub prefix: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Embedded,
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/lain/".into(),
        }
    }
}

/// Which state store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// redb in the data dir.
    Embedded,
    /// An etcd cluster (needs the `etcd` cargo feature, on by default).
    Etcd,
}

/// `[lifecycle]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Seconds (beyond `setup_time` and the health check's window) a new instance has to become
    /// ready before its rollout fails and the previous deployment comes back.
    pub rollout_timeout_secs: u64,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            rollout_timeout_secs: 120,
        }
    }
}

/// `[plugins]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginsConfig {
    /// Limits of every plugin call.
    pub limits: Limits,
    /// Configuration per plugin name, merged over the plugin's manifest defaults. Its `files`
    /// table (`name = "/path"`) is the only way a plugin is granted a file.
    pub config: BTreeMap<String, serde_json::Value>,
}

/// `[scheduler]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Scheduler plugins, run in this order (filters narrow, scorers add up).
    pub plugins: Vec<String>,
    /// Weight of each scorer's scores (default 1).
    pub weights: BTreeMap<String, u32>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            plugins: vec!["resources".into(), "constraint".into(), "spread".into()],
            weights: BTreeMap::new(),
        }
    }
}

/// `[auth]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Auth providers, asked in this order; the first that recognises the credentials decides.
    pub providers: Vec<String>,
    /// Principals in any of these groups are cluster admins.
    pub admin_groups: Vec<String>,
    /// These principals (`provider:subject`) are cluster admins.
    pub admin_users: Vec<String>,
    /// Principals in any of these groups hold the `metrics` right (read pull exporters).
    pub metrics_groups: Vec<String>,
    /// These principals (`provider:subject`) hold the `metrics` right.
    pub metrics_users: Vec<String>,
    /// Principals in any of these groups may register new apps (the `register` right), as
    /// cluster admins may. Default none: see `docs/permissions.md`.
    pub register_groups: Vec<String>,
    /// These principals (`provider:subject`) may register new apps.
    pub register_users: Vec<String>,
    /// On the embedded store, the token in `<data_dir>/bootstrap.token` (created 0600) is a
    /// cluster admin: the local bootstrap. Ignored with etcd, where only providers admit.
    pub bootstrap: bool,
    /// Newest audit records kept; older ones are pruned.
    pub audit_keep: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            providers: vec!["token".into(), "jwt".into()],
            admin_groups: vec!["admins".into()],
            admin_users: Vec::new(),
            metrics_groups: Vec::new(),
            metrics_users: Vec::new(),
            register_groups: Vec::new(),
            register_users: Vec::new(),
            bootstrap: true,
            audit_keep: 20_000,
        }
    }
}

/// `[secrets]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    /// The vault's master key file (64 hex digits; created 0600 with a random key when missing).
    /// Default `<data_dir>/vault.key`; keep it off the data dir's backups.
    pub key_file: Option<PathBuf>,
}

/// `[monitor]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Exporter plugins in use, by plugin name, and where each one's output goes. The operator
    /// decides: what an exporter's `describe()` says about delivery is never used.
    #[serde(deserialize_with = "exporters_table")]
    pub exporters: BTreeMap<String, ExporterConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            exporters: BTreeMap::from([(
                "prometheus".to_string(),
                ExporterConfig {
                    pull: Some("/metrics".into()),
                    push: None,
                    interval: 60,
                },
            )]),
        }
    }
}

/// `[monitor.exporters.<plugin>]`: exactly one of `pull` and `push`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// Serve the exporter's output on GET of this path of the API (to holders of the `metrics`
    /// right), e.g. `/metrics`.
    #[serde(default)]
    pub pull: Option<String>,
    /// Send the exporter's output over TCP to this `host:port` every `interval` seconds.
    #[serde(default)]
    pub push: Option<String>,
    /// Seconds between two pushes.
    #[serde(default = "default_interval")]
    pub interval: u32,
}

fn default_interval() -> u32 {
    60
}

/// `exporters` must be a table; the list of names it was before gets a message saying so.
fn exporters_table<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, ExporterConfig>, D::Error> {
    struct Table;
    impl<'de> serde::de::Visitor<'de> for Table {
        type Value = BTreeMap<String, ExporterConfig>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(
                "a table per exporter plugin saying where its output goes, e.g. \
                 `[monitor.exporters.prometheus] pull = \"/metrics\"` or \
                 `[monitor.exporters.graphite] push = \"host:2003\"`",
            )
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Table)
}

impl MonitorConfig {
    /// Checks every exporter's delivery: exactly one of `pull` (an absolute path of plain
    /// segments, outside `/api/` and `/healthz`, used once) and `push` (`host:port`, an
    /// interval of at least 1 s). The error names the exporter.
    pub fn check(&self) -> Result<(), String> {
        let mut paths: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, exporter) in &self.exporters {
            let at = format!("[monitor.exporters.{name}]");
            match (&exporter.pull, &exporter.push) {
                (Some(path), None) => {
                    check_pull_path(path).map_err(|e| format!("{at} pull: {e}"))?;
                    if let Some(other) = paths.insert(path, name) {
                        return Err(format!(
                            "{at} pull: `{path}` is already the path of exporter `{other}`"
                        ));
                    }
                }
                (None, Some(address)) => {
                    check_push_address(address).map_err(|e| format!("{at} push: {e}"))?;
                    if exporter.interval == 0 {
                        return Err(format!("{at} interval: at least 1 second"));
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: set exactly one of `pull = \"/path\"` (served to holders of the \
                         `metrics` right) and `push = \"host:port\"`"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A pull path: `/` and at most 16 plain segments of letters, digits, `.`, `_`, `~` and `-`;
/// not under `/api/` and not `/healthz` (the kernel's own routes).
fn check_pull_path(path: &str) -> Result<(), String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-'))
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(format!("`{}` does not start with `/`", path.escape_debug()));
    };
    if path.len() > 256 || rest.split('/').count() > 16 || !rest.split('/').all(plain) {
        return Err(format!(
            "`{}` is not `/` and plain segments (letters, digits, `.`, `_`, `~`, `-`)",
            path.escape_debug()
        ));
    }
    if rest == "healthz" || rest == "api" || rest.starts_with("api/") {
        return Err(format!("`{path}` is one of the kernel's own routes"));
    }
    Ok(())
}

/// A push address: `host:port`, the host a DNS name, an IPv4 address or a bracketed IPv6 one.
fn check_push_address(address: &str) -> Result<(), String> {
    let malformed = || format!("`{}` is not `host:port`", address.escape_debug());
    let (host, port) = address.rsplit_once(':').ok_or_else(malformed)?;
    if !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err(malformed());
    }
    let ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        }
    };
    if ok { Ok(()) } else { Err(malformed()) }
}

/// `[backup]`: read and kept, but the kernel does not run backups yet, so nothing calls the hook.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The backup-hook plugin that volume backups will call (not yet run by the kernel).
    pub hook: String,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            hook: "archive".into(),
        }
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            data_dir: PathBuf::from(".lain-data"),
            listen: "127.0.0.1:7070".into(),
            cache_dir: None,
            domains: vec!["lain.local".into()],
            runtime: RuntimeKind::default(),
            store: StoreConfig::default(),
            lifecycle: LifecycleConfig::default(),
            process: ProcessConfig::default(),
            docker: DockerConfig::default(),
            router: RouterConfig::default(),
            plugins: PluginsConfig::default(),
            proc_types: BTreeMap::new(),
            scheduler: SchedulerConfig::default(),
            auth: AuthConfig::default(),
            secrets: SecretsConfig::default(),
            monitor: MonitorConfig::default(),
            backup: BackupConfig::default(),
            config_file: None,
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Cannot read the file.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

impl KernelConfig {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<KernelConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: KernelConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        config.config_file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Applies the environment overrides `LAIN_DATA_DIR`, `LAIN_LISTEN`, `LAIN_RUNTIME`,
    /// `LAIN_STORE`, `LAIN_ETCD_ENDPOINTS` and `LAIN_DOCKER_HOST`.
    pub fn apply_env(&mut self) -> Result<(), ConfigError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let bad = |key: &str, value: &str| ConfigError::Parse {
            path: PathBuf::from(format!("${key}")),
            message: format!("unknown value `{value}`"),
        };
        if let Some(v) = env("LAIN_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = env("LAIN_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = env("LAIN_RUNTIME") {
            self.runtime = match v.as_str() {
                "process" => RuntimeKind::Process,
                "docker" => RuntimeKind::Docker,
                _ => return Err(bad("LAIN_RUNTIME", &v)),
            };
        }
        if let Some(v) = env("LAIN_STORE") {
            self.store.backend = match v.as_str() {
                "embedded" => StoreBackend::Embedded,
                "etcd" => StoreBackend::Etcd,
                _ => return Err(bad("LAIN_STORE", &v)),
            };
        }
        if let Some(v) = env("LAIN_ROUTER_LISTEN") {
            self.router.listen = v;
        }
        if let Some(v) = env("LAIN_ROUTER_HTTPS_LISTEN") {
            self.router.https_listen = Some(v);
        }
        if let Some(v) = env("LAIN_DOCKER_HOST") {
            self.docker.local = v;
        }
        if let Some(v) = env("LAIN_ETCD_ENDPOINTS") {
            self.store.endpoints = v.split(',').map(|s| s.trim().to_string()).collect();
        }
        Ok(())
    }

    /// The compiled-plugin cache directory.
    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache"))
    }

    /// The vault's master key file.
    pub fn key_file(&self) -> PathBuf {
        self.secrets
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("vault.key"))
    }

    /// The local bootstrap token's file, when the local bootstrap is on (embedded store only).
    pub fn bootstrap_token_file(&self) -> Option<PathBuf> {
        (self.auth.bootstrap && self.store.backend == StoreBackend::Embedded)
            .then(|| self.data_dir.join(BOOTSTRAP_TOKEN_FILE))
    }

    /// Every file and directory of the kernel's own: the data dir, the cache, the configuration
    /// file, the vault's key, TLS keys and the files granted to plugins. Sandboxes never see them.
    pub fn kernel_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.data_dir.clone(), self.cache_dir(), self.key_file()];
        paths.extend(self.config_file.clone());
        paths.extend(self.router.certificates.iter().map(|c| c.key.clone()));
        paths.extend(self.docker.tls.as_ref().map(|t| t.key.clone()));
        for plugin in self.plugins.config.values() {
            if let Some(files) = plugin.get("files").and_then(|f| f.as_object()) {
                paths.extend(files.values().filter_map(|v| v.as_str()).map(PathBuf::from));
            }
        }
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_example_and_rejects_typos() {
        let doc = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let config: KernelConfig = toml::from_str(&doc).expect("documented example parses");
        assert_eq!(
            config.scheduler.plugins,
            ["resources", "constraint", "spread"]
        );
        assert_eq!(config.proc_types["cron"], "my-cron");
        assert_eq!(config.plugins.limits.cpu_ms, 200);
        let err = toml::from_str::<KernelConfig>("lisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        config
            .monitor
            .check()
            .expect("documented exporters are valid");
        assert_eq!(
            config.monitor.exporters["graphite"].push.as_deref(),
            Some("graphite.lain.local:2003")
        );
    }

    #[test]
    fn exporters_are_delivered_where_the_operator_says() {
        let parse = |text: &str| toml::from_str::<KernelConfig>(text).map(|c| c.monitor);
        let err = parse("[monitor]\nexporters = [\"prometheus\"]").unwrap_err();
        assert!(
            err.to_string()
                .contains("[monitor.exporters.prometheus] pull"),
            "{err}"
        );
        let check = |body: &str| {
            parse(&format!("[monitor.exporters.x]\n{body}"))
                .expect("parses")
                .check()
        };
        check("pull = \"/metrics/x\"").expect("a pull path");
        check("push = \"[::1]:2003\"").expect("a push address");
        for (body, message) in [
            ("", "exactly one of"),
            ("pull = \"/m\"\npush = \"a:1\"", "exactly one of"),
            ("pull = \"metrics\"", "does not start with `/`"),
            ("pull = \"/api/v1/whoami\"", "kernel's own routes"),
            ("pull = \"/healthz\"", "kernel's own routes"),
            ("pull = \"/a/../b\"", "plain segments"),
            ("pull = \"/{app}\"", "plain segments"),
            ("pull = \"/\"", "plain segments"),
            ("push = \"evil\"", "not `host:port`"),
            ("push = \"a b:80\"", "not `host:port`"),
            ("push = \"a:1\"\ninterval = 0", "at least 1 second"),
        ] {
            let err = check(body).expect_err(body);
            assert!(
                err.contains("[monitor.exporters.x]") && err.contains(message),
                "{body}: {err}"
            );
        }
        let two = "[monitor.exporters.a]\npull = \"/m\"\n[monitor.exporters.b]\npull = \"/m\"";
        let err = parse(two)
            .expect("parses")
            .check()
            .expect_err("same path twice");
        assert!(err.contains("already the path of exporter `a`"), "{err}");
    }
}
