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
//!
//! [plugins.config.jwt]                # merged over the plugin's manifest defaults
//! issuer = "https://sso.example.org"
//! audience = "lain"
//! files = { jwks = "/etc/lain/jwks.json" }   # files the plugin may read by name
//!
//! [proc_types]                        # proc type -> plugin serving it (default: same name)
//! cron = "my-cron"
//!
//! [scheduler]
//! plugins = ["resources", "constraint", "spread"]   # run in this order
//! weights = { spread = 1 }
//!
//! [auth]
//! providers = ["token", "jwt"]        # asked in this order
//! admin_groups = ["admins"]           # principals in these groups are cluster admins
//! admin_users = []                    # ... and these subjects
//! bootstrap = true                    # embedded store only: <data_dir>/bootstrap.token is admin
//! audit_keep = 20000                  # newest audit records kept
//!
//! [secrets]
//! key_file = "/etc/lain/vault.key"    # the master key (64 hex digits); default <data_dir>/vault.key
//!
//! [monitor]
//! exporters = ["prometheus"]
//!
//! [backup]
//! hook = "archive"
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
    /// Which plugin serves each proc type, when not the plugin of the same name.
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
    /// Configuration per plugin name, merged over the plugin's manifest defaults.
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
    /// Principals with these subjects are cluster admins.
    pub admin_users: Vec<String>,
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
    /// Exporter plugins in use.
    pub exporters: Vec<String>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            exporters: vec!["prometheus".into()],
        }
    }
}

/// `[backup]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The backup-hook plugin.
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

    /// The plugin serving proc type `ty`.
    pub fn proc_type_plugin<'a>(&'a self, ty: &'a str) -> &'a str {
        self.proc_types.get(ty).map_or(ty, String::as_str)
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
        assert_eq!(config.proc_type_plugin("cron"), "my-cron");
        assert_eq!(config.proc_type_plugin("web"), "web");
        assert_eq!(config.plugins.limits.cpu_ms, 200);
        let err = toml::from_str::<KernelConfig>("lisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }
}
