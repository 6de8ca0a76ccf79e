//! What happens between `fork` and the `exec` of bwrap: the only unsafe code of the sandbox.
//!
//! bwrap runs as the sandbox's user and resolves every bind source by path, so a source must be
//! reachable by that user. The kernel's directories are not (the data dir is 0700): when the
//! kernel is root, the child clones each source as a detached mount (`open_tree`, from the
//! descriptor the kernel opened: no path is resolved again), enters a mount namespace of its
//! own, mounts a small tmpfs on `/tmp` there and attaches the clones in it (`move_mount`), then
//! drops to the sandbox's uid and gid. None of this is visible to the host. A kernel that is not
//! root owns its directories, so bwrap binds them by descriptor itself.

use super::Identity;
use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::process::Command;

/// Where the binds are staged in the child's own mount namespace (kernel as root).
pub(super) struct Stage {
    used: bool,
}

const STAGE: &str = "/tmp";

impl Stage {
    /// A stage, used when `switch` (the kernel is root and the child switches user).
    pub(super) fn new(switch: bool) -> Stage {
        Stage { used: switch }
    }

    /// The staged path of bind `i`.
    pub(super) fn target(&self, i: usize) -> String {
        format!("{STAGE}/b{i}")
    }
}

/// Makes `cmd`'s child stage `mounts` (in order, see [`Stage::target`]) and switch to `who` when
/// the kernel is root, keep `keep` open across `exec`, use umask 022 and ignore SIGTERM (bwrap
/// passes the disposition to lain's init, which restores it for the program alone).
pub(super) fn prepare(
    cmd: &mut Command,
    stage: Stage,
    mounts: Vec<OwnedFd>,
    keep: Vec<OwnedFd>,
    who: Identity,
) -> io::Result<()> {
    let c = |s: String| CString::new(s).map_err(io::Error::other);
    // Everything the child needs is allocated here: after `fork` it must not allocate.
    let mut clones: Vec<Option<OwnedFd>> = mounts.iter().map(|_| None).collect();
    let empty = c(String::new())?;
    let targets = (0..mounts.len())
        .map(|i| c(stage.target(i)))
        .collect::<io::Result<Vec<_>>>()?;
    let (root, stage_dir) = (c("/".into())?, c(STAGE.into())?);
    let (tmpfs, options) = (c("tmpfs".into())?, c("mode=0755,size=65536".into())?);
    let staged = stage.used;
    let (uid, gid) = (
        rustix::process::Uid::from_raw(who.uid),
        rustix::process::Gid::from_raw(who.gid),
    );
    let child = move || -> io::Result<()> {
        use rustix::mount::{MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags};
        if staged {
            // Clones of the sources, made while they are in this mount namespace.
            for (fd, clone) in mounts.iter().zip(clones.iter_mut()) {
                *clone = Some(rustix::mount::open_tree(
                    fd,
                    empty.as_c_str(),
                    OpenTreeFlags::OPEN_TREE_CLONE
                        | OpenTreeFlags::OPEN_TREE_CLOEXEC
                        | OpenTreeFlags::AT_RECURSIVE
                        | OpenTreeFlags::AT_EMPTY_PATH,
                )?);
            }
            // SAFETY: the child of `fork` has a single thread.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS)? };
            rustix::mount::mount_change(
                root.as_c_str(),
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            )?;
            rustix::mount::mount(
                tmpfs.as_c_str(),
                stage_dir.as_c_str(),
                tmpfs.as_c_str(),
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                options.as_c_str(),
            )?;
            for (clone, target) in clones.iter().zip(&targets) {
                rustix::fs::mkdir(target.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755))?;
                if let Some(clone) = clone {
                    rustix::mount::move_mount(
                        clone,
                        empty.as_c_str(),
                        rustix::fs::CWD,
                        target.as_c_str(),
                        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                    )?;
                }
            }
            rustix::thread::set_thread_groups(&[])?;
            rustix::thread::set_thread_res_gid(gid, gid, gid)?;
            rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        }
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        // SAFETY: `signal` is async-signal-safe; SIG_IGN installs no handler.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        for fd in &keep {
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the closure makes only system calls (no allocation, no locks) between `fork` and
    // `exec`, as `pre_exec` requires.
    unsafe { cmd.pre_exec(child) };
    Ok(())
}
