//! The process runtime's sandbox: every build script, instance and command health probe runs in
//! a bubblewrap (`bwrap`) sandbox under lain's own init ([`init`]).
//!
//! A sandbox has its own user, mount, pid, IPC, UTS and cgroup namespaces and shares the host's
//! network. It sees the [`Config::system_dirs`] read-only (with every path of the kernel
//! under them hidden), a private `/tmp`, its own `/proc` and a minimal `/dev`, and only the
//! directories and files a [`Jail`] names: a build context or an instance's own `/lain/app`, its
//! volumes, its secret files. Its environment is the one the jail gives, nothing of the kernel's.
//!
//! Who runs it ([`Identity`]): when the kernel runs as root, an unprivileged uid and gid per app
//! derived from the app's name; otherwise the kernel's own uid (the user namespace maps it to
//! itself), which isolates files and processes but not what that uid may do on the host.

pub mod init;
mod spawn;

use super::Config;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a sandbox cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The configuration cannot be used.
    #[error("[process] {0}")]
    Config(String),
    /// bwrap is missing, or cannot create namespaces here.
    #[error(
        "the process runtime runs every build and instance in a bubblewrap sandbox, and {0}. \
         Install it (Debian: `apt-get install bubblewrap`) and allow unprivileged user namespaces \
         (`sysctl user.max_user_namespaces=15000`; on Ubuntu also \
         `kernel.apparmor_restrict_unprivileged_userns=0`), or use runtime = \"docker\""
    )]
    Unavailable(String),
    /// lain's sandbox init is not installed next to `lain`.
    #[error(
        "lain's sandbox init {0} cannot be opened ({1}): install it next to the lain executable \
         (`cargo install` and `cargo build` put both there)"
    )]
    MissingInit(String, String),
    /// Preparing one sandbox failed.
    #[error("sandbox: {0}")]
    Io(String),
}

/// The uid and gid a sandbox runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// User id outside (and inside) the sandbox.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Whether the sandbox switches to them (the kernel is root) or keeps the kernel's.
    pub switch: bool,
}

/// One entry of the system directories.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum System {
    /// Bound read-only at the same path.
    Dir(PathBuf),
    /// Re-created as the same symlink (`/bin -> usr/bin`).
    Symlink(PathBuf, PathBuf),
}

/// The sandbox every build, instance and probe of one kernel shares.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sandbox {
    bwrap: PathBuf,
    system: Vec<System>,
    /// Paths of the kernel under a system directory (hidden from sandboxes that can reach them).
    hidden: Vec<PathBuf>,
    /// The kernel runs as root: apps get ids of their own.
    root: bool,
    uid_base: u32,
    uid_count: u32,
    own: (u32, u32),
}

/// Where a sandbox must not put a bind or a file: the read-only system directories and the
/// mounts every sandbox has.
const RESERVED: &[&str] = &["/proc", "/dev"];

impl Sandbox {
    /// The sandbox `config` describes; `kernel_paths` (see
    /// [`crate::config::KernelConfig::kernel_paths`]) are hidden wherever a system directory
    /// would show them.
    pub fn new(config: &Config, kernel_paths: &[PathBuf]) -> Result<Sandbox, SandboxError> {
        let bad = |m: String| SandboxError::Config(m);
        if config.uid_count == 0 {
            return Err(bad("uid_count must be at least 1".into()));
        }
        let last = u64::from(config.uid_base) + u64::from(config.uid_count) - 1;
        if config.uid_base < 1000 || last >= 0x7fff_ffff {
            return Err(bad(format!(
                "uid_base..uid_base+uid_count ({}..={last}) must lie within 1000..2147483646",
                config.uid_base
            )));
        }
        let bwrap = find_program(&config.bwrap).ok_or_else(|| {
            SandboxError::Unavailable(format!("`{}` is not installed", config.bwrap.display()))
        })?;
        // A sandbox's /tmp is its own, and a root kernel stages binds on /tmp (see `spawn`).
        if bwrap.starts_with("/tmp") {
            return Err(bad(format!(
                "bwrap: {} is under /tmp, which sandboxes do not share; install it elsewhere",
                bwrap.display()
            )));
        }
        let mut system = Vec::new();
        for dir in &config.system_dirs {
            let text = dir.to_string_lossy();
            let normal = dir.is_absolute()
                && dir.components().count() > 1
                && dir.components().all(|c| {
                    matches!(
                        c,
                        std::path::Component::RootDir | std::path::Component::Normal(_)
                    )
                });
            if !normal
                || ["/tmp", "/lain"]
                    .iter()
                    .chain(RESERVED)
                    .any(|r| dir.starts_with(r))
            {
                return Err(bad(format!(
                    "system_dirs: `{text}` must be an absolute path without `..`, not / and not under /tmp, /lain, /proc or /dev"
                )));
            }
            match std::fs::symlink_metadata(dir) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target = std::fs::read_link(dir)
                        .map_err(|e| bad(format!("system_dirs: {text}: {e}")))?;
                    system.push(System::Symlink(dir.clone(), target));
                }
                Ok(m) if m.is_dir() => system.push(System::Dir(dir.clone())),
                Ok(_) => return Err(bad(format!("system_dirs: {text} is not a directory"))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(bad(format!("system_dirs: {text}: {e}"))),
            }
        }
        let bound: Vec<PathBuf> = system
            .iter()
            .filter_map(|s| match s {
                System::Dir(d) => d.canonicalize().ok(),
                System::Symlink(..) => None,
            })
            .collect();
        // A path that does not exist yet (a key file created later) is taken by its directory.
        let canonical = |p: &PathBuf| {
            p.canonicalize().ok().or_else(|| {
                let parent = p.parent()?.canonicalize().ok()?;
                Some(parent.join(p.file_name()?))
            })
        };
        let hidden = kernel_paths
            .iter()
            .filter_map(canonical)
            .filter(|p| bound.iter().any(|b| p.starts_with(b)))
            .collect();
        Ok(Sandbox {
            bwrap,
            system,
            hidden,
            root: rustix::process::geteuid().is_root(),
            uid_base: config.uid_base,
            uid_count: config.uid_count,
            own: (
                rustix::process::getuid().as_raw(),
                rustix::process::getgid().as_raw(),
            ),
        })
    }

    /// Who app `app`'s sandboxes run as: when the kernel is root, `uid_base + sha256(app) %
    /// uid_count` (uid and gid alike); otherwise the kernel's own uid and gid.
    pub fn identity(&self, app: &str) -> Identity {
        if !self.root {
            return Identity {
                uid: self.own.0,
                gid: self.own.1,
                switch: false,
            };
        }
        let digest = sha2::Sha256::digest(app.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let id = self.uid_base + (u64::from_be_bytes(head) % u64::from(self.uid_count)) as u32;
        Identity {
            uid: id,
            gid: id,
            switch: true,
        }
    }

    /// Whether sandboxes switch to ids of their own (the kernel runs as root).
    pub fn switches_user(&self) -> bool {
        self.root
    }

    /// Runs `true` in a sandbox (with `init` as its init, see [`init::executable`]): the
    /// runtime refuses to start when this fails, saying why.
    pub fn check(&self, init: &Path) -> Result<(), SandboxError> {
        let jail = Jail {
            identity: self.identity("lain-sandbox-check"),
            binds: Vec::new(),
            files: Vec::new(),
            cwd: "/".into(),
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            argv: vec!["true".into()],
        };
        let output = self
            .command(jail, init, None)?
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                SandboxError::Unavailable(format!("`{}` cannot run: {e}", self.bwrap.display()))
            })?;
        if output.status.success() {
            return Ok(());
        }
        let why = String::from_utf8_lossy(&output.stderr);
        Err(SandboxError::Unavailable(format!(
            "`{}` could not create a sandbox here ({}: {})",
            self.bwrap.display(),
            output.status,
            why.trim()
        )))
    }

    /// Whether `path` (a sandbox path) lies where no bind or file may go: under a system
    /// directory (read-only, shared with the host), `/proc` or `/dev`.
    pub fn reserved(&self, path: &str) -> Option<String> {
        let p = Path::new(path);
        self.system
            .iter()
            .map(|s| match s {
                System::Dir(d) | System::Symlink(d, _) => d.as_path(),
            })
            .chain(RESERVED.iter().map(Path::new))
            .find(|root| p.starts_with(root))
            .map(|root| root.display().to_string())
    }

    /// A command that runs `jail` in a sandbox, under `init` (`lain-sandbox-init`, see
    /// [`init::executable`]) as its pid 1.
    /// With `status`, init writes how the program ended to that pipe (see [`init::Status`]).
    /// The command is its own process group; its members ignore SIGTERM except the program, so
    /// `kill(-pgid, SIGTERM)` reaches the program alone and SIGKILL ends the whole sandbox.
    pub fn command(
        &self,
        jail: Jail,
        init: &Path,
        status: Option<OwnedFd>,
    ) -> Result<Command, SandboxError> {
        let io = |what: &str, e: std::io::Error| SandboxError::Io(format!("{what}: {e}"));
        let init = std::fs::File::open(init)
            .map_err(|e| SandboxError::MissingInit(init.display().to_string(), e.to_string()))?;
        let mut args: Vec<String> = [
            "--unshare-all",
            "--share-net",
            "--die-with-parent",
            "--as-pid-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for s in &self.system {
            match s {
                System::Dir(d) => push(&mut args, &["--ro-bind", &path(d), &path(d)]),
                System::Symlink(d, target) => {
                    push(&mut args, &["--symlink", &path(target), &path(d)])
                }
            }
        }
        let to_hide = |p: &&PathBuf| p.exists() && reachable(p, &jail.identity);
        for hidden in self.hidden.iter().filter(to_hide) {
            if hidden.is_dir() {
                push(&mut args, &["--tmpfs", &path(hidden)]);
            } else {
                push(&mut args, &["--ro-bind", "/dev/null", &path(hidden)]);
            }
        }
        push(
            &mut args,
            &["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"],
        );
        let mut binds = jail.binds;
        binds.sort_by_key(|(_, dest)| dest.matches('/').count());
        let stage = spawn::Stage::new(jail.identity.switch);
        let mut keep = vec![init.into()];
        let mut mounts = Vec::new();
        for (i, (dir, dest)) in binds.into_iter().enumerate() {
            if jail.identity.switch {
                push(&mut args, &["--bind", &stage.target(i), &dest]);
                mounts.push(dir);
            } else {
                push(&mut args, &["--bind-fd", &raw(&dir), &dest]);
                keep.push(dir);
            }
        }
        for (file, dest) in jail.files {
            push(
                &mut args,
                &["--perms", "0400", "--ro-bind-data", &raw(&file), &dest],
            );
            keep.push(file);
        }
        push(
            &mut args,
            &[
                "--chdir",
                &jail.cwd,
                "--",
                &format!("/proc/self/fd/{}", raw(&keep[0])),
            ],
        );
        if let Some(fd) = &status {
            push(&mut args, &["--status-fd", &raw(fd)]);
        }
        args.push("--".into());
        args.extend(jail.argv);
        keep.extend(status);
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(&args)
            .env_clear()
            .envs(jail.env)
            .current_dir("/")
            .process_group(0);
        spawn::prepare(&mut cmd, stage, mounts, keep, jail.identity)
            .map_err(|e| io("cannot prepare the sandbox", e))?;
        Ok(cmd)
    }
}

/// `PATH` in every sandbox.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What one sandboxed program sees beyond the system directories, and how it runs.
pub struct Jail {
    /// Who it runs as.
    pub identity: Identity,
    /// Host directories (opened by the kernel, so no path is resolved twice) bound writable at
    /// sandbox paths; parents are bound before children.
    pub binds: Vec<(OwnedFd, String)>,
    /// Host files copied into the sandbox at sandbox paths, read-only (mode 0400).
    pub files: Vec<(OwnedFd, String)>,
    /// Working directory in the sandbox.
    pub cwd: String,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The program and its arguments (looked up in the sandbox's `PATH`).
    pub argv: Vec<String>,
}

fn push(args: &mut Vec<String>, more: &[&str]) {
    args.extend(more.iter().map(|s| s.to_string()));
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn raw(fd: &OwnedFd) -> String {
    std::os::fd::AsRawFd::as_raw_fd(fd).to_string()
}

/// `program` as an absolute path: as given when it has a `/`, else found in `PATH`.
fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether a process of `who` can reach `path`: every directory above it lets it search.
fn reachable(path: &Path, who: &Identity) -> bool {
    path.ancestors().skip(1).all(|dir| {
        std::fs::metadata(dir).is_ok_and(|m| {
            let bits = if m.uid() == who.uid {
                m.mode() >> 6
            } else if m.gid() == who.gid {
                m.mode() >> 3
            } else {
                m.mode()
            };
            bits & 1 == 1
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox() -> Sandbox {
        Sandbox {
            bwrap: "/usr/bin/bwrap".into(),
            system: vec![
                System::Dir("/usr".into()),
                System::Symlink("/bin".into(), "usr/bin".into()),
            ],
            hidden: Vec::new(),
            root: true,
            uid_base: 0x7000_0000,
            uid_count: 0x1_0000,
            own: (0, 0),
        }
    }

    #[test]
    fn apps_get_stable_distinct_unprivileged_ids_within_the_range() {
        let s = sandbox();
        let a = s.identity("shop");
        assert_eq!(a, s.identity("shop"), "the same on every call");
        assert_ne!(a.uid, s.identity("blog").uid);
        assert!(a.switch && a.uid == a.gid);
        assert!((0x7000_0000..0x7001_0000).contains(&a.uid));
        let one = Sandbox {
            uid_count: 1,
            ..sandbox()
        };
        assert_eq!(one.identity("shop").uid, 0x7000_0000);
        let user = Sandbox {
            root: false,
            own: (1234, 99),
            ..sandbox()
        };
        assert_eq!(
            user.identity("shop"),
            Identity {
                uid: 1234,
                gid: 99,
                switch: false
            }
        );
    }

    #[test]
    fn binds_may_not_go_under_system_dirs_proc_or_dev() {
        let s = sandbox();
        assert_eq!(s.reserved("/usr/share/x").as_deref(), Some("/usr"));
        assert_eq!(s.reserved("/bin/x").as_deref(), Some("/bin"));
        assert_eq!(s.reserved("/proc/1").as_deref(), Some("/proc"));
        assert_eq!(s.reserved("/lain/app/conf"), None);
        assert_eq!(s.reserved("/usrdata"), None);
        assert_eq!(s.reserved("/var/lib/data"), None);
    }

    #[test]
    fn bad_ranges_and_system_dirs_are_refused() {
        for (config, why) in [
            (
                Config {
                    uid_count: 0,
                    ..Config::default()
                },
                "uid_count",
            ),
            (
                Config {
                    uid_base: 0,
                    ..Config::default()
                },
                "uid_base",
            ),
            (
                Config {
                    system_dirs: vec!["/tmp".into()],
                    ..Config::default()
                },
                "/tmp",
            ),
            (
                Config {
                    system_dirs: vec!["/tmp/opt".into()],
                    ..Config::default()
                },
                "under /tmp",
            ),
            (
                Config {
                    system_dirs: vec!["/usr/../etc".into()],
                    ..Config::default()
                },
                "..",
            ),
        ] {
            let err = Sandbox::new(&config, &[]).expect_err(why).to_string();
            assert!(err.contains(why), "{err}");
        }
    }
}
