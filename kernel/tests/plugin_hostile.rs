//! Hostile components are contained with the right error while the kernel goes on serving.

mod common;

use common::{builtin, engine, engine_with, fixture, fixture_plugin};
use lain::plugin::bindings::types::{AppContext, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{Cause, FailurePolicy, InstallError, Limits, LoadedPlugin, Manifest};
use lain::schedule::{Backend, MemberSpec, Pipeline, ScheduleError};
use lain_builtin_plugins::fixtures;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn ctx() -> AppContext {
    AppContext {
        app: "evil".into(),
        app_domain: "evil".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn proc(name: &str) -> Proc {
    common::proc(name, "hostile")
}

/// Renders `name` with the hostile plugin and returns the failure.
fn render_fails(plugin: &LoadedPlugin, name: &str) -> lain::plugin::CallError {
    match ProcTypePlugin(plugin).render(&proc(name), &ctx()) {
        Ok(_) => panic!("{name}: the hostile call succeeded"),
        Err(e) => e,
    }
}

/// A well-behaved call to another plugin on the same engine still works.
fn kernel_still_serves(engine: &Arc<PluginEngine>) {
    let worker = builtin(engine, "worker", None);
    let mut p = proc("fine");
    p.proc_type = "worker".into();
    ProcTypePlugin(&worker)
        .render(&p, &ctx())
        .expect("a well-behaved plugin still works");
}

#[test]
fn endless_loop_is_stopped_by_the_cpu_budget() {
    let engine = engine_with(Limits {
        cpu_ms: 100,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let started = Instant::now();
    let err = render_fails(&hostile, "loop");
    assert!(
        matches!(err.cause, Cause::CpuBudget { budget_ms: 100 }),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(
        text.contains("plugin `hostile` 0.1.0")
            && text.contains("`render`")
            && text.contains("CPU budget"),
        "{text}"
    );
    kernel_still_serves(&engine);
}

#[test]
fn memory_bomb_is_stopped_by_the_memory_cap() {
    // The CPU budget is an epoch (wall-clock) deadline: on a loaded machine filling 64 MiB can
    // take longer than the default 200 ms, so it is raised for the memory cap to be what stops
    // the call.
    let engine = engine_with(Limits {
        cpu_ms: 10_000,
        wall_ms: 20_000,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "alloc");
    assert!(
        matches!(err.cause, Cause::MemoryCap { cap_bytes } if cap_bytes == 64 << 20),
        "{err}"
    );
    kernel_still_serves(&engine);
}

#[test]
fn panic_is_reported_with_its_message() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "panic");
    match &err.cause {
        Cause::Panic(message) => assert!(
            message.contains("hostile plugin panicked on purpose"),
            "{message}"
        ),
        other => panic!("expected a panic, got {other}"),
    }
    // A trapped instance is never reused: the next call gets a fresh one and works.
    ProcTypePlugin(&hostile)
        .render(&proc("fine"), &ctx())
        .expect("fresh instance works");
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let err = render_fails(&hostile, "recurse");
    assert!(matches!(err.cause, Cause::StackOverflow), "{err}");
    kernel_still_serves(&engine);
}

#[test]
fn enormous_results_are_refused() {
    // Building half a million strings takes a while in a debug build; the budget is raised so that
    // the defence under test, the result-size check, is the one that stops the call.
    let engine = engine_with(Limits {
        cpu_ms: 10_000,
        wall_ms: 20_000,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    for name in ["huge", "huge-string"] {
        let err = render_fails(&hostile, name);
        assert!(
            matches!(err.cause, Cause::ResultTooLarge { limit, .. } if limit == 8 << 20),
            "{name}: {err}"
        );
    }
    kernel_still_serves(&engine);
}

#[test]
fn component_for_the_wrong_world_is_refused_naming_the_export() {
    let engine = engine();
    let bytes = common::builtin_bytes("spread");
    let mut manifest = Manifest::embedded(bytes)
        .expect("parses")
        .expect("embedded");
    manifest.kind = lain::plugin::Kind::ProcType;
    let err = LoadedPlugin::load(&engine, manifest, bytes, false, None)
        .err()
        .expect("refused");
    match &err {
        InstallError::WrongWorld { world, reason } => {
            assert_eq!(world, "lain:plugin/proc-type@0.2.0");
            assert!(
                reason.contains(
                    "missing export `lain:plugin/proc-rendering@0.2.0` or `lain:plugin/proc-rendering@0.1.0`"
                ),
                "{reason}"
            );
            assert!(reason.contains("lain:plugin/scheduling@0.2.0"), "{reason}");
        }
        other => panic!("expected wrong world, got {other}"),
    }
}

#[test]
fn import_that_was_not_granted_is_refused() {
    let engine = engine();
    let bytes = fixture(fixtures::FORBIDDEN_IMPORT);
    let manifest = Manifest::embedded(&bytes)
        .expect("parses")
        .expect("embedded");
    let err = LoadedPlugin::load(&engine, manifest, &bytes, false, None)
        .err()
        .expect("refused");
    match &err {
        InstallError::ForbiddenImport { import, .. } => {
            assert!(import.starts_with("wasi:sockets/"), "{import}")
        }
        other => panic!("expected a forbidden import, got {other}"),
    }
}

#[test]
fn a_plugin_that_keeps_failing_is_quarantined_and_released() {
    let engine = engine_with(Limits {
        quarantine_after: 3,
        quarantine_secs: 3600,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    for _ in 0..3 {
        assert!(matches!(
            render_fails(&hostile, "panic").cause,
            Cause::Panic(_)
        ));
    }
    let err = render_fails(&hostile, "fine");
    assert!(
        matches!(err.cause, Cause::Quarantined { failures: 3, .. }),
        "{err}"
    );
    let report = hostile.health().report(hostile.policy());
    assert!(
        report.quarantined && report.failures == 3 && report.policy == FailurePolicy::Closed,
        "{report:?}"
    );
    hostile.health().release();
    ProcTypePlugin(&hostile)
        .render(&proc("fine"), &ctx())
        .expect("released plugin is called again");
}

#[test]
fn scheduler_that_panics_fails_its_placement_then_recovers_by_replay() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE_SCHEDULER);
    let factory = move || Ok(Box::new(LiveScheduler::start(hostile.clone())?) as Box<dyn Backend>);
    let spec = MemberSpec {
        name: "hostile-scheduler".into(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory: Box::new(factory),
    };
    let mut pipeline = Pipeline::new(vec![spec]).expect("pipeline");
    pipeline
        .upsert_node("n0", &[], 1 << 30, 1000)
        .expect("node");
    let good = pipeline
        .define_proc("app.worker.ok", "app", 1, 0, &[], &[])
        .expect("define");
    let bad = pipeline
        .define_proc("app.worker.panic", "app", 1, 0, &[], &[])
        .expect("define");
    assert_eq!(pipeline.place(good).expect("place"), Some(0));
    match pipeline.place(bad) {
        Err(ScheduleError::Plugin(e)) => assert!(
            matches!(e.cause, Cause::Panic(_)) && e.plugin == "hostile-scheduler",
            "{e}"
        ),
        other => panic!("expected the plugin's panic, got {other:?}"),
    }
    // The dead instance is replaced by a fresh one that gets the whole state replayed.
    assert_eq!(pipeline.place(good).expect("place after replay"), Some(0));
}

#[test]
fn scheduler_that_fails_open_is_skipped() {
    let engine = engine_with(Limits {
        cpu_ms: 50,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE_SCHEDULER);
    let factory = move || Ok(Box::new(LiveScheduler::start(hostile.clone())?) as Box<dyn Backend>);
    let spec = MemberSpec {
        name: "hostile-scheduler".into(),
        weight: 1,
        policy: FailurePolicy::Open,
        factory: Box::new(factory),
    };
    let mut pipeline = Pipeline::new(vec![spec]).expect("pipeline");
    pipeline
        .upsert_node("n0", &[], 1 << 30, 1000)
        .expect("node");
    let looping = pipeline
        .define_proc("app.worker.loop", "app", 1, 0, &[], &[])
        .expect("define");
    assert_eq!(
        pipeline.place(looping).expect("skipped, not failed"),
        Some(0)
    );
}

#[tokio::test]
async fn wall_clock_bound_stops_waiting() {
    // A generous CPU budget, a short wall clock: the caller gives up first.
    let engine = engine_with(Limits {
        cpu_ms: 3_000,
        wall_ms: 100,
        ..Limits::default()
    });
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let started = Instant::now();
    let wall = engine.limits().wall();
    let result = lain::plugin::limits::within_wall_clock(wall, move || {
        ProcTypePlugin(&hostile)
            .render(&proc("loop"), &ctx())
            .map(|_| ())
    })
    .await;
    assert!(
        matches!(result, Err(Cause::WallClock { wall_ms: 100 })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
}

/// The hostile plugin, loaded with `manifest` (its embedded one when `None`) and the operator's
/// configuration `operator`, on an engine with `limits`.
fn hostile_with(
    limits: Limits,
    manifest: Option<Manifest>,
    operator: Option<serde_json::Value>,
) -> Arc<LoadedPlugin> {
    let engine = engine_with(limits);
    let bytes = fixture(fixtures::HOSTILE);
    let manifest = manifest.unwrap_or_else(|| {
        Manifest::embedded(&bytes)
            .expect("parses")
            .expect("embedded")
    });
    Arc::new(
        LoadedPlugin::load(&engine, manifest, &bytes, false, operator.as_ref()).expect("loads"),
    )
}

/// The environment variable `name` of the proc `validate` returned for a proc named `proc_name`.
fn validated_env(plugin: &LoadedPlugin, proc_name: &str, name: &str) -> Option<String> {
    let proc = ProcTypePlugin(plugin)
        .validate(&proc(proc_name), &ctx())
        .expect("call")
        .expect("validated");
    proc.env
        .into_iter()
        .find(|v| v.name == name)
        .map(|v| v.value)
}

#[test]
fn a_manifest_cannot_grant_files_only_the_operator_can() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("vault.key");
    std::fs::write(&key, "master key").expect("write");
    // A manifest that grants itself a file is refused at parse time, naming the fix.
    let text = format!(
        "name = \"hostile\"\nversion = \"0.1.0\"\nkind = \"proc-type\"\n[config.files]\nkey = {:?}\n",
        key.display().to_string()
    );
    let err = Manifest::parse(&text).expect_err("a manifest granting files");
    assert!(
        err.to_string().contains("a manifest cannot grant files"),
        "{err}"
    );
    // A manifest recorded before this rule still reads nothing: its `files` are dropped.
    let mut old = Manifest::embedded(&fixture(fixtures::HOSTILE))
        .expect("parses")
        .expect("embedded");
    old.config = serde_json::json!({ "files": { "key": key } });
    let plugin = hostile_with(Limits::default(), Some(old), None);
    assert_eq!(validated_env(&plugin, "read-key", "HOSTILE_FILE"), None);
    let refusal = validated_env(&plugin, "read-key", "HOSTILE_FILE_ERROR").expect("refused");
    assert!(refusal.contains("is not granted"), "{refusal}");
    assert!(plugin.granted_files().is_empty());
    // The operator's grant is read, by name.
    let granted = serde_json::json!({ "files": { "key": key } });
    let plugin = hostile_with(Limits::default(), None, Some(granted));
    assert_eq!(
        validated_env(&plugin, "read-key", "HOSTILE_FILE").as_deref(),
        Some("master key")
    );
}

#[test]
fn read_file_refuses_what_is_not_a_regular_file_and_bounds_the_read() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    // A writer feeds 5 MiB, more than the 4 MiB cap; it opens read-write so it never waits.
    let mut writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .expect("open the fifo");
    std::thread::spawn(move || {
        let _ = writer.write_all(&vec![b'x'; 5 << 20]);
    });
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'y'; (4 << 20) + 1]).expect("write");
    let mut files = serde_json::json!({ "fifo": fifo, "big": big, "dev": "/dev/null" });
    // `/proc` files say they are empty: this one holds more than 4 MiB on most kernels.
    let kallsyms = std::fs::read("/proc/kallsyms").map_or(0, |b| b.len());
    if kallsyms > 4 << 20 {
        files["proc"] = "/proc/kallsyms".into();
    } else {
        eprintln!("/proc/kallsyms holds {kallsyms} bytes here: the /proc case is skipped");
    }
    // Time spent reading in the host counts against the epoch deadline: raised, so that a loaded
    // machine does not turn a slow `/proc` read into a budget error.
    let plugin = hostile_with(
        Limits {
            cpu_ms: 10_000,
            wall_ms: 20_000,
            ..Limits::default()
        },
        None,
        Some(serde_json::json!({ "files": files })),
    );
    let (done, result) = std::sync::mpsc::channel();
    let p = plugin.clone();
    std::thread::spawn(move || {
        let refusal = |name: &str| {
            let len = validated_env(&p, &format!("read-{name}"), "HOSTILE_FILE_LEN");
            let error = validated_env(&p, &format!("read-{name}"), "HOSTILE_FILE_ERROR");
            (name.to_string(), len, error)
        };
        let names = ["fifo", "dev", "big", "proc"];
        let _ = done.send(names.map(refusal));
    });
    let outcomes = result
        .recv_timeout(Duration::from_secs(20))
        .expect("read-file never blocks");
    for (name, len, error) in outcomes {
        if name == "proc" && kallsyms <= 4 << 20 {
            continue;
        }
        let error = error.unwrap_or_else(|| panic!("{name}: read {len:?} bytes"));
        let expected = match name.as_str() {
            "fifo" | "dev" => "not a regular file",
            _ => "larger than 4194304 bytes",
        };
        assert!(error.contains(expected), "{name}: {error}");
    }
}

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_plugin_cannot_forge_split_or_flood_the_kernel_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let plugin = hostile_with(
        Limits {
            cpu_ms: 10_000,
            wall_ms: 20_000,
            log_lines_per_sec: 50,
            ..Limits::default()
        },
        None,
        None,
    );
    tracing::subscriber::with_default(subscriber, || {
        validated_env(&plugin, "flood", "none");
    });
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        !lines.iter().any(|l| l.starts_with("2025-01-01T00:00:00")),
        "a forged line: {}",
        lines
            .iter()
            .find(|l| l.starts_with("2025-01-01"))
            .unwrap_or(&"")
    );
    let records = lines.iter().filter(|l| l.contains("record ")).count();
    assert!(
        (50..=60).contains(&records),
        "{records} records of 1000 were logged"
    );
    assert!(
        lines.iter().all(|l| l.len() < 64 << 10),
        "a line of {} bytes",
        lines.iter().map(|l| l.len()).max().unwrap_or(0)
    );
    let first = lines
        .iter()
        .find(|l| l.contains("record 0"))
        .expect("record 0");
    assert!(
        first.contains("record 0\\n2025-01-01T00:00:00.000000Z  INFO lain::auth: admin login ok"),
        "the newline is escaped: {first}"
    );
    assert!(first.contains("(8 more fields dropped)"), "{first}");
    // Dropped lines are counted and said, in one or more notices.
    let dropped: u64 = lines
        .iter()
        .filter(|l| l.contains("log lines dropped: over the limit of 50 lines per second"))
        .filter_map(|l| {
            let at = l.find(" log lines dropped")?;
            l[..at].rsplit(' ').next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(
        dropped as usize + records,
        1000,
        "{records} logged, {dropped} dropped"
    );
}

#[test]
fn names_paths_and_routes_a_plugin_returns_are_checked_like_user_input() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    for (name, expected) in [
        ("rename", "cannot rename"),
        ("bad-volume", "volume `/data/../../../etc`"),
        ("bad-secret", "secret file `../vault.key`"),
        ("bad-env", "environment variable `A=B`"),
    ] {
        let err = ProcTypePlugin(&hostile)
            .validate(&proc(name), &ctx())
            .expect_err(name);
        assert!(
            matches!(&err.cause, Cause::BadResult(m) if m.contains(expected)),
            "{name}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("plugin `hostile` 0.1.0") && text.contains("`validate`"),
            "{text}"
        );
        // An invalid answer is a fault: enough of them quarantine the plugin.
        hostile.health().release();
    }
    for (name, expected) in [
        (
            "bad-route",
            "route host `evil.lain.local; include /etc/shadow`",
        ),
        ("bad-workdir", "workdir `../../etc`"),
    ] {
        let err = render_fails(&hostile, name);
        assert!(
            matches!(&err.cause, Cause::BadResult(m) if m.contains(expected)),
            "{name}: {err}"
        );
    }
    assert_eq!(hostile.health().report(hostile.policy()).failures, 6);
    hostile.health().release();
    ProcTypePlugin(&hostile)
        .validate(&proc("fine"), &ctx())
        .expect("call")
        .expect("a proc completed within the rules passes");
}

#[test]
fn problems_a_plugin_reports_are_cut_and_escaped() {
    let engine = engine();
    let hostile = fixture_plugin(&engine, fixtures::HOSTILE);
    let problems = ProcTypePlugin(&hostile)
        .validate(&proc("escape-problem"), &ctx())
        .expect("the call itself succeeds")
        .expect_err("the proc is refused");
    let p = &problems[0];
    let texts = [
        p.message.as_str(),
        p.hint.as_deref().unwrap_or(""),
        &p.path[0],
    ];
    for text in texts {
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
    assert!(
        p.message.contains("\\u{1b}[2J") && p.message.contains("\\nINFO"),
        "escaped, not dropped: {}",
        p.message
    );
    assert!(
        p.hint.as_ref().is_some_and(|h| h.ends_with("bytes cut)")),
        "the hint is cut: {:?}",
        p.hint
    );
}

#[tokio::test]
async fn an_exporter_is_pushed_only_where_the_operator_says() {
    use lain::monitor::ExporterConfig;
    use std::io::Read as _;
    let operator = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let asked = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    for l in [&operator, &asked] {
        l.set_nonblocking(true).expect("non-blocking");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn lain::store::Store> = Arc::new(
        lain::store::embedded::EmbeddedStore::open(&dir.path().join("state.redb")).expect("store"),
    );
    let registry = lain::plugin::registry::Registry::open(
        engine(),
        store,
        lain_builtin_plugins::BUILTINS,
        Default::default(),
    )
    .expect("registry");
    let manifest = format!(
        "name = \"hostile-exporter\"\nversion = \"1\"\nkind = \"monitor-exporter\"\n[config]\npush = \"{}\"\n",
        asked.local_addr().expect("addr")
    );
    registry
        .install(&fixture(fixtures::HOSTILE_EXPORTER), Some(&manifest))
        .expect("install");
    let exporters = std::collections::BTreeMap::from([(
        "hostile-exporter".to_string(),
        ExporterConfig {
            pull: None,
            push: Some(operator.local_addr().expect("addr").to_string()),
            interval: 1,
        },
    )]);
    let monitor = lain::monitor::Monitor::new(Arc::new(registry), exporters);
    monitor.push_due(0).await;
    let (mut conn, _) = operator
        .accept()
        .expect("the kernel pushed to the operator's address");
    conn.set_nonblocking(false).expect("blocking");
    let mut body = String::new();
    conn.read_to_string(&mut body).expect("read");
    assert!(body.contains("hostile exporter"), "{body}");
    assert!(
        matches!(asked.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the kernel connected where the plugin asked"
    );
}
