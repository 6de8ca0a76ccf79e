//! What a volume backup costs, against `tar | zstd` of the same tree in the same run.
//!
//! Run with `cargo bench -p lain --bench backup`. Makes a tree of mixed files (1 GiB in a full
//! run: half incompressible noise, half repetitive text, files of 4 KiB to 4 MiB), then:
//! - *restic full*: the kernel's engine ([`lain::backup::restic::Restic`]) backs it up into a
//!   new repository (`--force`, as a full backup does): time and repository size;
//! - *tar | zstd*: `tar -cf - . | zstd -3` of the same tree: time and archive size;
//! - *restic incremental*: 1% of the bytes rewritten (whole files), then a backup with the full
//!   one as its parent: time and bytes added.
//!
//! It prints the ratios (restic/tar time and size; incremental/full time and bytes) and writes
//! them to `target/bench/backup.json`. It fails only if a step fails or the incremental stores
//! more than 3 times the changed bytes.

#[path = "../support/mode.rs"]
mod mode;
use anyhow::{Context as _, Result, bail};
use lain::backup::restic::{BackupArgs, Restic};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Bytes of the tree.
fn tree_bytes() -> u64 {
    mode::pick(1 << 30, 16 << 20)
}

/// `n` bytes of xorshift noise for `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// `n` bytes of text that compresses (log-like lines).
fn text(seed: u64, n: usize) -> Vec<u8> {
    let words = [
        "GET",
        "/api/v1/apps",
        "200",
        "ok",
        "user",
        "latency_ms",
        "web",
        "worker",
    ];
    let mut out = Vec::with_capacity(n + 64);
    let mut i = seed;
    while out.len() < n {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let w = words[(i >> 33) as usize % words.len()];
        out.extend_from_slice(format!("{} {w} {}\n", i >> 40, (i >> 20) % 1000).as_bytes());
    }
    out.truncate(n);
    out
}

/// Writes the tree; returns its files and their sizes.
fn make_tree(root: &Path, total: u64) -> Result<Vec<(std::path::PathBuf, usize)>> {
    let mut files = Vec::new();
    let (mut written, mut i) = (0u64, 0u64);
    while written < total {
        let size = 4096usize << (i % 11); // 4 KiB .. 4 MiB
        let size = size.min((total - written) as usize).max(1);
        let dir = root.join(format!("d{}", i % 16));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("f{i}"));
        let data = if i % 2 == 0 {
            noise(i, size)
        } else {
            text(i, size)
        };
        std::fs::write(&path, data)?;
        files.push((path, size));
        written += size as u64;
        i += 1;
    }
    Ok(files)
}

/// Bytes under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += du(&entry.path()),
            Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => {}
        }
    }
    total
}

fn main() -> Result<()> {
    mode::announce("backup");
    let tmp = tempfile::tempdir()?;
    let tree = tmp.path().join("volume");
    let total = tree_bytes();
    let files = make_tree(&tree, total)?;
    let restic = Restic::new(
        Path::new("restic"),
        &tmp.path().join("repo"),
        &tmp.path().join("keys/backup.key"),
        &tmp.path().join("cache"),
        Duration::from_secs(3600),
    );
    restic
        .ensure()
        .context("restic init (install the Debian package `restic`)")?;
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch)?;
    let include = vec![".".to_string()];
    let backup = |parent: Option<&str>, force: bool| {
        let args = BackupArgs {
            root: &tree,
            include: &include,
            exclude: &[],
            parent,
            force,
            tags: &[],
            scratch: &scratch,
        };
        let started = Instant::now();
        let summary = restic.backup(&args, &mut |_| {})?;
        Ok::<_, anyhow::Error>((started.elapsed(), summary))
    };

    let (full_time, full) = backup(None, true)?;
    let repo_full = du(&tmp.path().join("repo"));

    let archive = tmp.path().join("volume.tar.zst");
    let started = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg("tar -C \"$1\" -cf - . | zstd -q -3 -o \"$2\"")
        .args(["sh", &tree.to_string_lossy(), &archive.to_string_lossy()])
        .status()?;
    let tar_time = started.elapsed();
    if !status.success() {
        bail!("tar | zstd failed (install tar and zstd)");
    }
    let tar_size = std::fs::metadata(&archive)?.len();

    // Rewrite 1% of the bytes, whole files, with new noise.
    let target = total / 100;
    let mut changed = 0u64;
    for (n, (path, size)) in files.iter().enumerate().rev() {
        if changed >= target {
            break;
        }
        if (*size as u64) <= target - changed || changed == 0 {
            std::fs::write(path, noise(1_000_000 + n as u64, *size))?;
            changed += *size as u64;
        }
    }
    let (incr_time, incr) = backup(Some(&full.snapshot_id), false)?;
    let repo_after = du(&tmp.path().join("repo"));

    let secs = |d: Duration| d.as_secs_f64();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "tree {:.0} MiB in {} files; changed {:.1} MiB ({:.2}%)",
        mib(total),
        files.len(),
        mib(changed),
        100.0 * changed as f64 / total as f64
    );
    println!(
        "restic full:        {:>8.2} s  repository {:>8.1} MiB (added {:.1} MiB)",
        secs(full_time),
        mib(repo_full),
        mib(full.data_added)
    );
    println!(
        "tar | zstd -3:      {:>8.2} s  archive    {:>8.1} MiB",
        secs(tar_time),
        mib(tar_size)
    );
    println!(
        "restic incremental: {:>8.2} s  added      {:>8.1} MiB (repository +{:.1} MiB)",
        secs(incr_time),
        mib(incr.data_added),
        mib(repo_after.saturating_sub(repo_full))
    );
    let report = serde_json::json!({
        "tree_bytes": total,
        "changed_bytes": changed,
        "restic_full_s": secs(full_time),
        "restic_full_repo_bytes": repo_full,
        "tar_zstd_s": secs(tar_time),
        "tar_zstd_bytes": tar_size,
        "restic_incremental_s": secs(incr_time),
        "restic_incremental_added_bytes": incr.data_added,
        "full_time_ratio_restic_to_tar_zstd": secs(full_time) / secs(tar_time),
        "full_size_ratio_restic_to_tar_zstd": repo_full as f64 / tar_size as f64,
        "incremental_to_full_time": secs(incr_time) / secs(full_time),
        "incremental_to_full_bytes": incr.data_added as f64 / full.data_added.max(1) as f64,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if incr.data_added > 3 * changed.max(1) {
        bail!(
            "the incremental stored {} bytes for {changed} changed bytes",
            incr.data_added
        );
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join(mode::report_file("backup")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    Ok(())
}
