//! The process runtime against real processes, with the real `lain-shim`.

use lain::runtime::process::Config as ProcessConfig;
use lain::runtime::process::ProcessRuntime;
use lain::runtime::process::sandbox::Sandbox;
use lain::runtime::{InstanceSpec, RunState, Runtime, RuntimeError, labels};
use std::path::Path;
use std::time::{Duration, Instant};

fn runtime(dir: &Path) -> ProcessRuntime {
    ProcessRuntime::open(
        &dir.join("instances"),
        Path::new(env!("CARGO_BIN_EXE_lain")),
        Sandbox::new(&ProcessConfig::default(), &[]).expect("sandbox"),
    )
    .expect("runtime opens")
}

fn spec(dir: &Path, name: &str, argv: &[&str]) -> InstanceSpec {
    std::fs::create_dir_all(dir.join("release")).expect("release dir");
    InstanceSpec {
        name: name.into(),
        labels: [(labels::KERNEL.to_string(), "k1".to_string())].into(),
        image: dir.join("release").to_string_lossy().into_owned(),
        entrypoint: None,
        cmd: (!argv.is_empty()).then(|| argv.iter().map(|s| s.to_string()).collect()),
        user: None,
        env: vec![("GREETING".into(), "hi".into())],
        workdir: None,
        ports: vec![lain::runtime::InstancePort::tcp(80)],
        memory: 64 << 20,
        cpu: 0,
        log_file: dir.join("logs").join(format!("{name}.log")),
        aliases: Vec::new(),
        dns_search: Vec::new(),
        volumes: Vec::new(),
        volume_root: dir.join("volumes"),
        cloud_volumes: Vec::new(),
        cloud_root: std::path::PathBuf::new(),
        health: None,
        secret_files: Vec::new(),
    }
}

async fn state(rt: &ProcessRuntime, name: &str) -> RunState {
    rt.list("k1")
        .await
        .expect("list")
        .into_iter()
        .find(|o| o.name == name)
        .map(|o| o.state)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

async fn wait_exited(rt: &ProcessRuntime, name: &str) -> RunState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = state(rt, name).await;
        if matches!(s, RunState::Exited { .. }) || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_instance_is_created_once_started_once_and_its_output_and_exit_are_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    let s = spec(
        tmp.path(),
        "a.i1",
        &[
            "sh",
            "-c",
            "echo \"$GREETING on $PORT\"; echo oops >&2; exit 3",
        ],
    );
    rt.create(&s).await.expect("create");
    assert!(
        matches!(rt.create(&s).await, Err(RuntimeError::Exists(_))),
        "a name is taken once"
    );
    assert_eq!(state(&rt, "a.i1").await, RunState::Created);
    rt.start("a.i1").await.expect("start");
    let exited = wait_exited(&rt, "a.i1").await;
    assert!(
        matches!(
            exited,
            RunState::Exited {
                code: Some(3),
                signal: None,
                ..
            }
        ),
        "{exited:?}"
    );
    let listed = rt.list("k1").await.expect("list");
    let port = listed[0].host_ports[0];
    assert!(port > 0);
    let log = std::fs::read_to_string(&s.log_file).expect("log");
    assert!(
        log.contains(&format!("hi on {port}")) && log.contains("oops"),
        "{log}"
    );
    assert!(
        rt.list("other-kernel").await.expect("list").is_empty(),
        "labels select"
    );

    // Starting again reruns it: the exit status is replaced, the log appended.
    rt.start("a.i1").await.expect("restart");
    wait_exited(&rt, "a.i1").await;
    let log = std::fs::read_to_string(&s.log_file).expect("log");
    assert_eq!(log.matches("oops").count(), 2, "{log}");
    rt.remove("a.i1").await.expect("remove");
    assert!(rt.list("k1").await.expect("list").is_empty());
    rt.remove("a.i1")
        .await
        .expect("removing a missing instance is fine");
}

/// The program's pid of running instance `name`.
async fn running_pid(rt: &ProcessRuntime, name: &str) -> u32 {
    match state(rt, name).await {
        RunState::Running { pid: Some(pid), .. } => pid,
        other => panic!("{name} does not run: {other:?}"),
    }
}

/// Kills `pid` with SIGKILL, from outside.
fn kill9(pid: u32) {
    let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
    rustix::process::kill_process(pid, rustix::process::Signal::KILL).expect("kill -9");
}

#[tokio::test]
async fn an_instance_that_ends_wakes_the_follower_of_exit_events_at_once() {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let tmp = tempfile::tempdir().expect("tempdir");
    let wake = Arc::new(Notify::new());
    let rt = runtime(tmp.path()).with_exit_events(wake.clone());
    rt.create(&spec(tmp.path(), "ev.i1", &["sleep", "1000"]))
        .await
        .expect("create");
    rt.start("ev.i1").await.expect("start");
    let pid = running_pid(&rt, "ev.i1").await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
    assert!(quiet.is_err(), "woken while the instance runs");
    kill9(pid);
    let killed = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), wake.notified())
        .await
        .expect("no wake-up for the instance's end");
    // Woken once the end is recorded: the first look sees it.
    assert!(
        matches!(state(&rt, "ev.i1").await, RunState::Exited { .. }),
        "woken {:?} after the kill, before the end was recorded",
        killed.elapsed()
    );

    // A runtime that finds the instance running (a kernel restarted) follows it from its first
    // listing.
    rt.start("ev.i1").await.expect("start again");
    let wake2 = Arc::new(Notify::new());
    let adopted = runtime(tmp.path()).with_exit_events(wake2.clone());
    let pid = running_pid(&adopted, "ev.i1").await;
    kill9(pid);
    tokio::time::timeout(Duration::from_secs(3), wake2.notified())
        .await
        .expect("no wake-up for the end of an instance found running");
    assert!(matches!(
        state(&adopted, "ev.i1").await,
        RunState::Exited { .. }
    ));
    rt.remove("ev.i1").await.expect("remove");
}

#[tokio::test]
async fn start_is_idempotent_and_stop_kills_after_the_grace_period() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    // Ignores SIGTERM (and so does its `sleep`): only SIGKILL ends it.
    let s = spec(
        tmp.path(),
        "b.i1",
        &["sh", "-c", "trap '' TERM; echo ready; sleep 100"],
    );
    rt.create(&s).await.expect("create");
    rt.start("b.i1").await.expect("start");
    let RunState::Running { pid: Some(pid), .. } = state(&rt, "b.i1").await else {
        panic!("not running");
    };
    rt.start("b.i1").await.expect("second start");
    let RunState::Running {
        pid: Some(again), ..
    } = state(&rt, "b.i1").await
    else {
        panic!("not running");
    };
    assert_eq!(pid, again, "a second start must not run a second process");
    assert!(
        matches!(rt.remove("b.i1").await, Err(RuntimeError::Failed(_))),
        "running: not removable"
    );

    // Only once the trap is set does SIGTERM go unheard.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&s.log_file).is_ok_and(|l| l.contains("ready")) {
        assert!(Instant::now() < deadline, "the script never got ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    rt.stop("b.i1", Duration::from_secs(1)).await.expect("stop");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let exited = state(&rt, "b.i1").await;
    assert!(
        matches!(
            exited,
            RunState::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{exited:?}"
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process gone");
    rt.remove("b.i1").await.expect("remove");
}

#[tokio::test]
async fn a_cooperative_process_stops_on_sigterm_without_waiting() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    rt.create(&spec(tmp.path(), "c.i1", &["sleep", "100"]))
        .await
        .expect("create");
    rt.start("c.i1").await.expect("start");
    let t = Instant::now();
    rt.stop("c.i1", Duration::from_secs(30))
        .await
        .expect("stop");
    assert!(t.elapsed() < Duration::from_secs(5));
    let exited = state(&rt, "c.i1").await;
    assert!(
        matches!(
            exited,
            RunState::Exited {
                signal: Some(15),
                ..
            }
        ),
        "{exited:?}"
    );
}

#[tokio::test]
async fn bad_specs_are_refused_before_anything_exists() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    for (s, why) in [
        (spec(tmp.path(), "d.i1", &[]), "no command"),
        (
            spec(tmp.path(), "../escape", &["true"]),
            "invalid instance name",
        ),
        (
            InstanceSpec {
                image: "/nonexistent/release".into(),
                ..spec(tmp.path(), "d.i2", &["true"])
            },
            "release directory",
        ),
        (
            InstanceSpec {
                user: Some("nobody".into()),
                ..spec(tmp.path(), "d.i3", &["true"])
            },
            "cannot run one as another user",
        ),
    ] {
        match rt.create(&s).await {
            Err(RuntimeError::Invalid { reason, .. }) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{why}: {other:?}"),
        }
    }
    assert!(rt.list("k1").await.expect("list").is_empty());
}

#[tokio::test]
async fn a_program_that_cannot_start_is_an_exit_with_its_reason_in_the_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    let s = spec(tmp.path(), "e.i1", &["/no/such/program"]);
    rt.create(&s).await.expect("create");
    rt.start("e.i1").await.expect("start");
    let exited = wait_exited(&rt, "e.i1").await;
    assert!(
        matches!(
            exited,
            RunState::Exited {
                code: Some(127),
                ..
            }
        ),
        "{exited:?}"
    );
    let log = std::fs::read_to_string(&s.log_file).expect("log");
    assert!(log.contains("cannot run `/no/such/program`"), "{log}");
}

#[tokio::test]
async fn memory_limits_go_to_the_cgroup_where_one_is_writable() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    rt.create(&spec(tmp.path(), "f.i1", &["sleep", "100"]))
        .await
        .expect("create");
    rt.start("f.i1").await.expect("start");
    rt.set_memory("f.i1", 96 << 20).await.expect("set memory");
    let listed = rt.list("k1").await.expect("list");
    assert_eq!(listed[0].memory, 96 << 20);
    if rt.enforces_memory() {
        let limit = [
            "/sys/fs/cgroup/lain/f.i1/memory.max",
            "/sys/fs/cgroup/memory/lain/f.i1/memory.limit_in_bytes",
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .expect("the instance's cgroup");
        assert_eq!(limit.trim(), (96u64 << 20).to_string());
    }
    rt.stop("f.i1", Duration::from_secs(5)).await.expect("stop");
    rt.remove("f.i1").await.expect("remove");
}

/// The instance's CPU limit as its cgroup holds it, in microseconds per 100 ms (`None`: no
/// limit), and whether `pid` is in that group.
fn cpu_cgroup(name: &str, pid: u32) -> (Option<u64>, bool) {
    let v2 = Path::new("/sys/fs/cgroup/lain").join(name);
    let (dir, quota) = if v2.join("cpu.max").exists() {
        let text = std::fs::read_to_string(v2.join("cpu.max")).expect("cpu.max");
        let (quota, period) = text.trim().split_once(' ').expect("quota period");
        assert_eq!(period, "100000");
        (v2, quota.parse().ok())
    } else {
        let dir = Path::new("/sys/fs/cgroup/cpu/lain").join(name);
        let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).expect("period");
        assert_eq!(period.trim(), "100000");
        let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).expect("quota");
        (dir, quota.trim().parse().ok().filter(|q: &u64| *q > 0))
    };
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("cgroup.procs");
    (quota, procs.lines().any(|l| l.trim() == pid.to_string()))
}

#[tokio::test]
async fn cpu_limits_go_to_the_cgroup_and_change_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rt = runtime(tmp.path());
    // Root with a cpu controller (v1's, or v2's offered at the root) must enforce limits.
    let offered = Path::new("/sys/fs/cgroup/cpu/cgroup.procs").exists()
        || std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
    if rustix::process::geteuid().is_root() && offered {
        assert!(rt.enforces_cpu(), "a root kernel with a cpu controller");
    }
    rt.create(&InstanceSpec {
        cpu: 500,
        ..spec(tmp.path(), "c.i1", &["sleep", "100"])
    })
    .await
    .expect("create");
    rt.start("c.i1").await.expect("start");
    let running = |o: &lain::runtime::Observed| match o.state {
        RunState::Running { pid, started_at } => (pid.expect("pid"), started_at),
        ref s => panic!("not running: {s:?}"),
    };
    let listed = rt.list("k1").await.expect("list");
    assert_eq!(listed[0].cpu, 500);
    let (pid, started) = running(&listed[0]);
    if rt.enforces_cpu() {
        assert_eq!(cpu_cgroup("c.i1", pid), (Some(50_000), true));
    }
    rt.set_cpu("c.i1", 1500).await.expect("set cpu");
    let listed = rt.list("k1").await.expect("list");
    assert_eq!(listed[0].cpu, 1500);
    assert_eq!(
        running(&listed[0]),
        (pid, started),
        "the same run: no restart"
    );
    if rt.enforces_cpu() {
        assert_eq!(cpu_cgroup("c.i1", pid), (Some(150_000), true));
    }
    rt.set_cpu("c.i1", 0).await.expect("lift the limit");
    if rt.enforces_cpu() {
        assert_eq!(cpu_cgroup("c.i1", pid), (None, true));
    }
    // A restart applies the limit set in place, not the one created with.
    rt.set_cpu("c.i1", 250).await.expect("set cpu");
    rt.stop("c.i1", Duration::from_secs(5)).await.expect("stop");
    rt.start("c.i1").await.expect("start again");
    let listed = rt.list("k1").await.expect("list");
    let (pid, _) = running(&listed[0]);
    if rt.enforces_cpu() {
        assert_eq!(cpu_cgroup("c.i1", pid), (Some(25_000), true));
    }
    rt.stop("c.i1", Duration::from_secs(5)).await.expect("stop");
    rt.remove("c.i1").await.expect("remove");
    assert!(!Path::new("/sys/fs/cgroup/cpu/lain/c.i1").exists());
}

#[test]
fn without_a_working_bubblewrap_the_runtime_refuses_to_start_saying_how_to_fix_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = |bwrap: &str| ProcessConfig {
        bwrap: bwrap.into(),
        ..ProcessConfig::default()
    };
    let err = Sandbox::new(&config("/nonexistent/bwrap"), &[])
        .expect_err("no bwrap")
        .to_string();
    assert!(
        err.contains("`/nonexistent/bwrap` is not installed")
            && err.contains("apt-get install bubblewrap")
            && err.contains("runtime = \"docker\""),
        "{err}"
    );
    // A bwrap that cannot create a sandbox (as where user namespaces are off) fails the start.
    let broken = Sandbox::new(&config("/bin/false"), &[]).expect("found");
    let err = ProcessRuntime::open(
        &tmp.path().join("instances"),
        Path::new(env!("CARGO_BIN_EXE_lain")),
        broken,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(
        err.contains("could not create a sandbox here") && err.contains("user.max_user_namespaces"),
        "{err}"
    );
    // A `lain` whose companions are missing: each is named with where to put it.
    let missing = |companion: &str| {
        let sandbox = Sandbox::new(&ProcessConfig::default(), &[]).expect("sandbox");
        let err = ProcessRuntime::open(
            &tmp.path().join("instances"),
            &tmp.path().join("lain"),
            sandbox,
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(
            err.contains(companion) && err.contains("next to the lain executable"),
            "{err}"
        );
    };
    missing("lain-shim");
    std::fs::write(tmp.path().join("lain-shim"), b"").expect("a shim");
    missing("lain-sandbox-init");
}

#[tokio::test]
async fn the_kernels_paths_under_a_system_dir_are_hidden_and_system_dirs_are_read_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    // A system directory of the test's own, outside /tmp (every sandbox has its own /tmp),
    // that everyone may read: what the kernel keeps there must still be out of reach.
    let sys = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let sys = sys.path();
    let open = std::fs::Permissions::from_mode(0o755);
    std::fs::set_permissions(sys, open.clone()).expect("chmod");
    std::fs::write(sys.join("visible.txt"), "visible-to-all\n").expect("write");
    std::fs::write(sys.join("lain.toml"), "token = \"config-secret\"\n").expect("write");
    std::fs::create_dir(sys.join("keys")).expect("mkdir");
    std::fs::set_permissions(sys.join("keys"), open).expect("chmod");
    std::fs::write(sys.join("keys/tls.key"), "key-secret\n").expect("write");
    let mut config = ProcessConfig::default();
    config.system_dirs.push(sys.to_path_buf());
    let sandbox =
        Sandbox::new(&config, &[sys.join("lain.toml"), sys.join("keys")]).expect("sandbox");
    let rt = ProcessRuntime::open(
        &tmp.path().join("instances"),
        Path::new(env!("CARGO_BIN_EXE_lain")),
        sandbox,
    )
    .expect("runtime opens");
    let d = sys.display();
    let script = format!(
        "cat {d}/visible.txt; cat {d}/lain.toml; echo \"LS[$(ls {d}/keys)]\"; cat {d}/keys/tls.key; \
         if touch {d}/new 2>/dev/null; then echo WROTE; else echo READ-ONLY; fi"
    );
    let s = spec(tmp.path(), "m.i1", &["sh", "-c", &script]);
    rt.create(&s).await.expect("create");
    rt.start("m.i1").await.expect("start");
    wait_exited(&rt, "m.i1").await;
    let log = std::fs::read_to_string(&s.log_file).expect("log");
    assert!(
        log.contains("visible-to-all") && log.contains("READ-ONLY"),
        "{log}"
    );
    assert!(
        !log.contains("config-secret") && !log.contains("key-secret") && log.contains("LS[]"),
        "{log}"
    );
    assert!(!sys.join("new").exists());
}
