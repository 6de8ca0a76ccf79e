//! The kernel's configuration: one TOML file, every key optional, environment overrides.
//!
//! Each concern owns its section's type and defaults ([`router::Config`], [`lifecycle::Config`],
//! [`runtime::process::Config`], [`runtime::docker::Config`], [`store::Config`], ...); this module
//! only assembles them into [`KernelConfig`], loads the file, applies the environment and checks
//! what no section can check alone. The dependency goes one way: no concern imports this module.
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
//! lease_ttl_secs = 3                  # etcd: the leader's lease; a dead leader is replaced after it
//!
//! [lifecycle]
//! rollout_timeout_secs = 120          # a new instance not ready by then fails the rollout
//! parallel_starts = 0                 # instances created and started at once; 0 = 3 per core, 4-16
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
//! cloud_volumes_root = "/mnt/shared/lain"   # `cloud_volumes`; default <data_dir>/cloud-volumes
//!
//! [docker]                            # with runtime = "docker"
//! local = "unix:///var/run/docker.sock"   # LAIN_DOCKER_HOST: the engine of node `local`
//! tls = { ca = "/etc/lain/ca.pem", cert = "/etc/lain/cert.pem", key = "/etc/lain/key.pem" }
//! registry = "registry.lain.local:5000"   # releases are pushed here, nodes pull from it
//! network = "bridge"                  # app networks; "overlay": one swarm overlay network per
//!                                     # app across the engines (docs/operations-docker.md)
//! [docker.cloud_volumes]              # named volumes for `cloud_volumes`; default: `local`
//! driver = "local"                    # `{name}` in an option is the volume's name
//! options = { type = "nfs", o = "addr=10.0.0.5,rw", device = ":/exports/lain/{name}" }
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
//! limits = { cpu_ms = 50 }            # this plugin's own cpu_ms, wall_ms, memory_bytes
//!                                     # (`lain plugin config jwt` changes this table live)
//!
//! [proc_types]                        # proc type -> plugin serving it (default: the one plugin
//! cron = "my-cron"                    # describing it; built-in types: the built-in plugin)
//!
//! [scheduler]                         # seeds the pipeline in the store on a fresh store; then
//!                                     # `lain scheduler set` changes it (this is not read again)
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
//! hook = "archive"                   # the backup-hook plugin that plans volume backups
//! hooks = { "store.db" = "dump-first", shop = "archive" }   # per proc (`app.proc`) or app
//! repository = "/srv/lain-backups"   # the restic repository; default <data_dir>/backups/restic
//! password_file = "/etc/lain/backup.key"   # default backup.key beside the vault's key file
//! timeout_secs = 21600               # one restic run at most; command_timeout_secs: pre/post_run
//! # [backup.s3]                       # or S3-compatible storage instead of `repository`:
//! # endpoint = "https://s3.eu-west-1.amazonaws.com"   # http(s)://host[:port], no path
//! # bucket = "lain-backups"
//! # prefix = "site-a"                 # a path inside the bucket; default its root
//! # region = "eu-west-1"              # default us-east-1
//! # credentials_file = "/etc/lain/s3.credentials"   # 0600: access_key_id, secret_access_key
//! ```

use crate::runtime::{self, RuntimeKind};
use crate::{auth, backup, lifecycle, monitor, plugin, router, schedule, secrets, store};
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
    pub store: store::Config,
    /// Deploys and rollouts.
    pub lifecycle: lifecycle::Config,
    /// The process runtime's sandbox.
    pub process: runtime::process::Config,
    /// The Docker runtime's engines.
    pub docker: runtime::docker::Config,
    /// The web router.
    pub router: router::Config,
    /// Plugin limits and per-plugin configuration.
    pub plugins: plugin::Config,
    /// Which plugin serves each proc type: the one way to give a plugin a type another plugin
    /// serves, or a built-in type. Without an entry, a type is served by the one enabled plugin
    /// describing it (a built-in type by its built-in plugin).
    pub proc_types: BTreeMap<String, String>,
    /// The scheduling pipeline a fresh state store starts with (see [`schedule::live`]).
    pub scheduler: schedule::Config,
    /// The authentication chain, cluster admins and the audit log.
    pub auth: auth::Config,
    /// Secret files (the vault).
    pub secrets: secrets::Config,
    /// Monitoring exporters.
    pub monitor: monitor::Config,
    /// Backups.
    pub backup: backup::Config,
    /// The file this configuration was loaded from (hidden from every sandbox).
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            data_dir: PathBuf::from(".lain-data"),
            listen: "127.0.0.1:7070".into(),
            cache_dir: None,
            domains: vec!["lain.local".into()],
            runtime: RuntimeKind::default(),
            store: store::Config::default(),
            lifecycle: lifecycle::Config::default(),
            process: runtime::process::Config::default(),
            docker: runtime::docker::Config::default(),
            router: router::Config::default(),
            plugins: plugin::Config::default(),
            proc_types: BTreeMap::new(),
            scheduler: schedule::Config::default(),
            auth: auth::Config::default(),
            secrets: secrets::Config::default(),
            monitor: monitor::Config::default(),
            backup: backup::Config::default(),
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
                "embedded" => store::Backend::Embedded,
                "etcd" => store::Backend::Etcd,
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
        (self.auth.bootstrap && self.store.backend == store::Backend::Embedded)
            .then(|| self.data_dir.join(BOOTSTRAP_TOKEN_FILE))
    }

    /// Every file and directory of the kernel's own: the data dir, the cache, the configuration
    /// file, the vault's key, TLS keys and the files granted to plugins. Sandboxes never see them.
    pub fn kernel_paths(&self) -> Vec<PathBuf> {
        let mut paths = vec![
            self.data_dir.clone(),
            self.cache_dir(),
            self.key_file(),
            self.backup.password_file(&self.key_file()),
            self.backup.repository(&self.data_dir),
        ];
        paths.extend(
            self.backup
                .s3
                .as_ref()
                .map(|s3| s3.credentials_file.clone()),
        );
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

    /// Checks the rules a section cannot check on its own or that parsing does not: the
    /// store's lease, the lifecycle's parallel starts ([`lifecycle::Config::check`]), the
    /// monitor's exporters ([`monitor::Config::check`]), the backup hooks' names and repository
    /// ([`backup::Config::check`]) and each plugin's own limits ([`plugin::Config::check`]).
    pub fn check(&self) -> Result<(), String> {
        self.store.check()?;
        self.lifecycle.check()?;
        self.monitor.check()?;
        self.backup.check()?;
        self.plugins.check()
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
        config
            .backup
            .check()
            .expect("documented backup hooks are valid");
        assert_eq!(config.backup.hook_for("store", "db"), "dump-first");
        assert_eq!(config.backup.hook_for("shop", "db"), "archive");
        assert_eq!(config.backup.hook_for("store", "web"), "archive");
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
}
