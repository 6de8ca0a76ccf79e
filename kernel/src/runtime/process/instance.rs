//! An instance's directory: preparing it (its spec, secret files, own `/lain/app`, volumes and
//! cloud volumes) and what the instance sees of it when it runs.

use super::sandbox::{Jail, Sandbox};
use super::{APP_DIR, InstanceSpec, StoredSpec, tree, write_atomic};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Where an instance's secret files are kept, in its directory: `/lain/app/conf` is
/// `secrets/lain/app/conf`; each start copies them into the sandbox at their own paths.
const SECRETS_DIR: &str = "secrets";

/// Checks that `path` (a volume's or a secret file's path in the sandbox) is absolute, has no
/// `.` or `..`, and is not where the sandbox cannot place anything (the read-only system
/// directories, `/proc`, `/dev`) or where the app itself is (`/`, `/lain`, `/lain/app`).
pub(super) fn check_place(sandbox: &Sandbox, what: &str, path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let normal = p.is_absolute()
        && p.components()
            .skip(1)
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && p.components().collect::<PathBuf>().as_os_str() == path;
    if !normal || ["/", "/lain", "/lain/app"].contains(&path) {
        return Err(format!(
            "{what} {path}: a path in the sandbox is absolute, without `.` or `..`, and not /, /lain or /lain/app"
        ));
    }
    match sandbox.reserved(path) {
        Some(root) => Err(format!(
            "{what} {path}: {root} is shared read-only with the host on the process runtime; use a path outside it (e.g. under /lain/app)"
        )),
        None => Ok(()),
    }
}

/// Prepares instance `spec` in `tmp` (a new directory): its spec, its secret files (0600 in
/// 0700 directories, the kernel's), its own `/lain/app` and its volumes.
pub(super) fn prepare(
    tmp: &Path,
    spec: &InstanceSpec,
    release: &Path,
    stored: &StoredSpec,
) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    let json = serde_json::to_vec(stored).map_err(|e| e.to_string())?;
    write_atomic(&tmp.join("spec.json"), &json).map_err(|e| e.to_string())?;
    place_secrets(&tmp.join(SECRETS_DIR), &spec.secret_files)
        .map_err(|e| format!("secret files: {e}"))?;
    let who = stored.identity;
    let owner = who.switch.then_some((who.uid, who.gid));
    tree::farm(release, &tmp.join(APP_DIR), owner).map_err(|e| format!("/lain/app: {e}"))?;
    for volume in &spec.volumes {
        make_volume(&spec.volume_root, volume, owner)
            .map_err(|e| format!("volume {volume}: {e}"))?;
    }
    for cloud in &spec.cloud_volumes {
        make_volume(&spec.cloud_root, &cloud.dir, owner)
            .map_err(|e| format!("cloud volume {}: {e}", cloud.path))?;
    }
    Ok(())
}

/// Creates volume `path` (a sandbox path, or a cloud volume's directory) under `root` if it is
/// missing, owned by `owner` (the path's own directory; its parents stay the kernel's).
pub(super) fn make_volume(
    root: &Path,
    path: &str,
    owner: Option<tree::Owner>,
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    let dir = cap_std::fs::Dir::open_ambient_dir(root, cap_std::ambient_authority())?;
    let rel = path.trim_start_matches('/');
    dir.create_dir_all(rel)?;
    if let Some((uid, gid)) = owner {
        rustix::fs::chownat(
            &dir,
            rel,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(())
}

/// What instance `dir` sees when it runs `argv`: its own `/lain/app`, its volumes, its cloud
/// volumes and its secret files (every path opened here, through capabilities, never resolved again).
pub(crate) fn instance_jail(
    dir: &Path,
    stored: &StoredSpec,
    argv: Vec<String>,
) -> std::io::Result<Jail> {
    let open = |path: &Path| cap_std::fs::Dir::open_ambient_dir(path, cap_std::ambient_authority());
    let fd = |d: cap_std::fs::Dir| OwnedFd::from(d.into_std_file());
    let mut binds = vec![(fd(open(&dir.join(APP_DIR))?), "/lain/app".to_string())];
    if !stored.spec.volumes.is_empty() {
        let root = open(&stored.spec.volume_root)?;
        for volume in &stored.spec.volumes {
            binds.push((
                fd(root.open_dir(volume.trim_start_matches('/'))?),
                volume.clone(),
            ));
        }
    }
    if !stored.spec.cloud_volumes.is_empty() {
        let root = open(&stored.spec.cloud_root)?;
        for cloud in &stored.spec.cloud_volumes {
            binds.push((fd(root.open_dir(&cloud.dir)?), cloud.path.clone()));
        }
    }
    let mut files = Vec::new();
    if !stored.secrets.is_empty() {
        let secrets = open(&dir.join(SECRETS_DIR))?;
        for path in &stored.secrets {
            let file = secrets.open(path.trim_start_matches('/'))?;
            files.push((OwnedFd::from(file.into_std()), path.clone()));
        }
    }
    Ok(Jail {
        identity: stored.identity,
        binds,
        files,
        cwd: stored.cwd.clone(),
        env: stored.env.clone(),
        argv,
    })
}

/// Writes `files` under `dir` as 0600 files in 0700 directories, the kernel's.
fn place_secrets(dir: &Path, files: &[crate::runtime::SecretFile]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    for file in files {
        let path = dir.join(file.path.trim_start_matches('/'));
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&file.content)?;
    }
    Ok(())
}
