//! Volumes end to end on the process runtime, through the real `lain` binary: a volume keeps
//! its files across a crash restart, an upgrade (done in place, on the same node) and a
//! `kill -9` of the kernel; a drain leaves an instance with volumes on its node and says so, and
//! a missing instance whose node is drained is not started elsewhere on an empty volume; cloud
//! volumes are shared by a proc's instances (`single`) or one per instance (`multi`).

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{KernelProcess, instances, json, until, write_app};

/// An app whose worker appends a line to `/data/runs` at every start (and prints how many
/// there are), then sleeps: the file counts the runs that saw the volume.
fn keeper(root: &Path, instances: u32) -> PathBuf {
    let dir = write_app(
        root,
        "keeper",
        &format!(
            "appname: keeper\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh run.sh\n  \
             num_instances: {instances}\n  volumes:\n    - /data\n"
        ),
    );
    std::fs::write(
        dir.join("run.sh"),
        "echo \"$LAIN_ATTEMPT $(cat /lain/app/version)\" >> /data/runs\n\
         echo \"runs: $(wc -l < /data/runs)\"\nexec sleep 100000\n",
    )
    .expect("run.sh");
    std::fs::write(dir.join("version"), "v1\n").expect("version");
    dir
}

/// The lines of instance `no`'s `/data/runs`, as its volume holds them on the host.
fn runs(data: &Path, no: u32) -> Vec<String> {
    let path = data.join(format!("volumes/keeper/worker/{no}/data/runs"));
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn pid(instance: &Value) -> i64 {
    instance["state"]["pid"].as_i64().expect("pid")
}

fn problem(view: &Value, proc: &str) -> String {
    view["procs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == proc)
        .and_then(|p| p["problem"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn running(view: &Value) -> Vec<&Value> {
    instances(view, "worker")
        .into_iter()
        .filter(|i| i["state"]["state"] == "running" && i["retiring"] != true)
        .collect()
}

#[test]
fn a_volume_keeps_its_files_across_restart_upgrade_and_kernel_kill_dash_nine() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    // A second node: a stateless instance would be rolled onto it by an upgrade (spread).
    kernel.lain_ok(&["node", "add", "n2", "--memory", "2G"]);
    let app = keeper(tmp.path(), 1);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "keeper", "-o", "json"]));
    let first = running(&view)[0].clone();
    let home = first["node"].as_str().expect("node").to_string();
    until("the first run", || {
        (runs(&data, 1).len() == 1).then_some(())
    });
    assert_eq!(runs(&data, 1), ["1 v1"]);

    // A crash: the instance comes back on its node and sees the file of the first run.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid(&first).to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let view = kernel.wait_for("keeper", "the restart", |v| {
        running(v)
            .first()
            .is_some_and(|w| pid(w) != pid(&first) && w["restarts"] == 1)
    });
    assert_eq!(running(&view)[0]["node"], home.as_str());
    until("the second run", || {
        (runs(&data, 1).len() == 2).then_some(())
    });
    assert_eq!(runs(&data, 1), ["1 v1", "2 v1"]);

    // An upgrade: stopped first, recreated on the same node, on the same volume.
    std::fs::write(app.join("version"), "v2\n").expect("version");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "keeper", "-o", "json"]));
    let upgraded = running(&view);
    assert_eq!(upgraded.len(), 1, "{view:#}");
    assert_eq!(
        upgraded[0]["node"],
        home.as_str(),
        "upgraded in place: {view:#}"
    );
    until("the upgraded run", || {
        (runs(&data, 1).len() == 3).then_some(())
    });
    assert_eq!(runs(&data, 1), ["1 v1", "2 v1", "1 v2"]);
    let upgraded_pid = pid(upgraded[0]);

    // kill -9 of the kernel: the instance is adopted (not restarted), its volume untouched.
    kernel.kill9();
    kernel.restart();
    let view = kernel.wait_for("keeper", "adoption", |v| {
        v["converged"] == true && v["pass"].as_u64() > Some(1)
    });
    assert_eq!(pid(running(&view)[0]), upgraded_pid, "{view:#}");
    assert_eq!(runs(&data, 1).len(), 3);
    // ... and a crash after it still finds every earlier run.
    let killed = std::process::Command::new("kill")
        .args(["-9", &upgraded_pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    until("the run after the kernel's restart", || {
        (runs(&data, 1).len() == 4).then_some(())
    });
    assert_eq!(runs(&data, 1)[3], "2 v2");
    let logs = kernel.lain_ok(&["logs", "worker", "-a", "keeper"]);
    assert!(logs.contains("[1] runs: 4"), "{logs}");
    // `lain volume list`: where it lives and how large it is.
    let listed = json(&kernel.lain_ok(&["volume", "list", "-a", "keeper", "-o", "json"]));
    let size = std::fs::metadata(data.join("volumes/keeper/worker/1/data/runs"))
        .expect("runs")
        .len();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    assert_eq!(
        (
            &listed[0]["proc_name"],
            &listed[0]["number"],
            &listed[0]["node"]
        ),
        (
            &Value::from("worker"),
            &Value::from(1),
            &Value::from(home.as_str())
        ),
        "{listed:#}"
    );
    assert_eq!(
        (listed[0]["bytes"].as_u64(), listed[0]["files"].as_u64()),
        (Some(size), Some(1)),
        "{listed:#}"
    );
    let table = kernel.lain_ok(&["volume", "list", "-a", "keeper"]);
    assert!(
        table.contains("/data") && table.contains(&format!("{size} B in 1 files")),
        "{table}"
    );
    let view = kernel.ps("keeper");
    assert_eq!(running(&view)[0]["node"], home.as_str());
}

#[test]
fn a_drain_leaves_an_instance_with_volumes_on_its_node_and_reports_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    kernel.lain_ok(&["node", "add", "n2", "--memory", "2G"]);
    let app = keeper(tmp.path(), 2);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "keeper", "-o", "json"]));
    let on_local: Vec<(u64, i64)> = running(&view)
        .iter()
        .filter(|i| i["node"] == "local")
        .map(|i| (i["instance"].as_u64().expect("number"), pid(i)))
        .collect();
    assert_eq!(on_local.len(), 1, "spread over the two nodes: {view:#}");
    let (no, local_pid) = on_local[0];
    let no = u32::try_from(no).expect("number");

    // The drain: the instance stays where its volume is, and the proc says why.
    kernel.lain_ok(&["node", "maintain", "local"]);
    let view = kernel.wait_for("keeper", "the report", |v| {
        problem(v, "worker").contains("in maintenance")
    });
    let said = problem(&view, "worker");
    assert!(
        said.contains(&format!("instance {no} has its volumes on node local"))
            && said.contains("not started on another node on an empty volume"),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let view = kernel.ps("keeper");
    let mine: Vec<&Value> = running(&view)
        .into_iter()
        .filter(|i| i["instance"] == no)
        .collect();
    assert_eq!(mine.len(), 1, "{view:#}");
    assert_eq!(
        (mine[0]["node"].as_str(), pid(mine[0])),
        (Some("local"), local_pid)
    );
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert!(
        apps.to_string().contains("has its volumes on node local"),
        "the app's last error says it too: {apps:#}"
    );

    // Scaled to nothing and back while local is drained: the instance whose volume is on local
    // is not created elsewhere; the other one comes back on its node.
    kernel.lain_ok(&["scale", "worker", "-a", "keeper", "--num-instances", "0"]);
    kernel.wait_for("keeper", "nothing running", |v| {
        instances(v, "worker").is_empty()
    });
    kernel.lain_ok(&[
        "scale",
        "worker",
        "-a",
        "keeper",
        "--num-instances",
        "2",
        "--no-wait",
    ]);
    let view = kernel.wait_for("keeper", "one instance back and one reported", |v| {
        running(v).len() == 1 && problem(v, "worker").contains(&format!("instance {no} has"))
    });
    assert_eq!(running(&view)[0]["node"], "n2", "{view:#}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(running(&kernel.ps("keeper")).len(), 1);
    assert_eq!(runs(&data, no).len(), 1, "its volume was not touched");

    // Back in service: it comes back on local, on the volume it had.
    kernel.lain_ok(&["node", "maintain", "local", "--off"]);
    let view = kernel.wait_for("keeper", "both running", |v| {
        running(v).len() == 2 && v["converged"] == true
    });
    let back: Vec<&Value> = running(&view)
        .into_iter()
        .filter(|i| i["instance"] == no)
        .collect();
    assert_eq!(back[0]["node"], "local", "{view:#}");
    until("its second run", || {
        (runs(&data, no).len() == 2).then_some(())
    });
    assert_eq!(problem(&view, "worker"), "");
}

#[test]
fn a_single_cloud_volume_is_shared_by_the_instances_and_a_multi_one_is_their_own() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    let app = write_app(
        tmp.path(),
        "shared",
        "appname: shared\nbuild:\n  base: busybox\n  script: []\n\
         worker:\n  cmd: sh shared.sh\n  num_instances: 2\n  cloud_volumes:\n    type: single\n    dirs:\n      - /shared\n\
         worker.own:\n  cmd: sh own.sh\n  num_instances: 2\n  cloud_volumes:\n    dirs:\n      - /own\n",
    );
    // Each instance leaves its mark and waits until it sees the other's.
    std::fs::write(
        app.join("shared.sh"),
        "echo $LAIN_INSTANCE_NO > /shared/from-$LAIN_INSTANCE_NO\n\
         until [ -e /shared/from-1 ] && [ -e /shared/from-2 ]; do sleep 0.2; done\n\
         echo \"saw $(ls /shared | tr '\\n' ' ')\"\nexec sleep 100000\n",
    )
    .expect("shared.sh");
    std::fs::write(
        app.join("own.sh"),
        "echo $LAIN_INSTANCE_NO >> /own/who\necho \"own holds $(cat /own/who)\"\nexec sleep 100000\n",
    )
    .expect("own.sh");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "shared"]);
    let logs = until("both instances to see both marks", || {
        let logs = kernel.lain_ok(&["logs", "worker", "-a", "shared"]);
        (logs.contains("[1] saw from-1 from-2") && logs.contains("[2] saw from-1 from-2"))
            .then_some(logs)
    });
    assert_eq!(logs.matches(" saw ").count(), 2, "{logs}");
    let root = data.join("cloud-volumes/shared");
    assert!(root.join("worker/shared/from-1").is_file());
    assert!(root.join("worker/shared/from-2").is_file());
    let own = until("the multi instances to run", || {
        let logs = kernel.lain_ok(&["logs", "own", "-a", "shared"]);
        (logs.matches("own holds").count() == 2).then_some(logs)
    });
    assert!(
        own.contains("[1] own holds 1\n") && own.contains("[2] own holds 2\n"),
        "{own}"
    );
    for no in ["1", "2"] {
        let who = std::fs::read_to_string(root.join(format!("own/{no}/own/who"))).expect("who");
        assert_eq!(who, format!("{no}\n"));
    }
}

#[test]
fn declared_log_files_reach_lain_logs_across_rotation_and_truncation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let app = write_app(
        tmp.path(),
        "talker",
        "appname: talker\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh talk.sh\n  \
         logs:\n    - app.log\n",
    );
    // Each step waits for the collector (a pass a second) to see the file as it is.
    std::fs::write(
        app.join("talk.sh"),
        "cd /lain/logs\necho first >> app.log\nsleep 2\necho second >> app.log\n\
         mv app.log app.log.1\necho third > app.log\nsleep 2\n: > app.log\nsleep 2\n\
         echo fourth >> app.log\necho not-declared > other.log\necho done\nexec sleep 100000\n",
    )
    .expect("talk.sh");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "talker"]);
    // Followed from the start: every line arrives, in order, as it is collected.
    let mut follow = kernel
        .lain_cmd(&["logs", "worker", "-a", "talker", "--file", "app.log", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lain logs -f");
    let stdout = follow.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut followed = Vec::new();
    while !followed.iter().any(|l: &String| l.contains("fourth")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => followed.push(line),
            Err(e) => panic!("lain logs -f stopped ({e}) after {followed:?}"),
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(
        followed.first().map(String::as_str),
        Some("[1] first"),
        "{followed:?}"
    );
    assert_eq!(
        followed.iter().filter(|l| l.contains("third")).count(),
        1,
        "{followed:?}"
    );
    let file = until("the log file's last line", || {
        let text = kernel.lain_ok(&["logs", "worker", "-a", "talker", "--file", "app.log"]);
        text.contains("fourth").then_some(text)
    });
    let lines: Vec<&str> = file.lines().collect();
    assert_eq!(
        lines,
        [
            "[1] first",
            "[1] second",
            "[1] third",
            "[1] -- lain: the log was truncated; reading on from its start --",
            "[1] fourth"
        ],
        "{file}"
    );
    // The output stays apart; an undeclared file is not served.
    let out = kernel.lain_ok(&["logs", "worker", "-a", "talker"]);
    assert!(out.contains("[1] done") && !out.contains("first"), "{out}");
    let err = kernel.lain_err(&["logs", "worker", "-a", "talker", "--file", "other.log"]);
    assert!(err.contains("declares no log file `other.log`"), "{err}");
}

/// An app `mover` whose worker appends a line to `/data/runs` at every start (and prints how
/// many there are), and takes 3 s to stop (so a migration can be caught while it stops).
fn mover(root: &Path) -> PathBuf {
    let dir = write_app(
        root,
        "mover",
        "appname: mover\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh run.sh\n  \
         volumes:\n    - /data\n",
    );
    std::fs::write(
        dir.join("run.sh"),
        "echo \"$LAIN_ATTEMPT $(cat /lain/app/version)\" >> /data/runs\n\
         echo \"runs: $(wc -l < /data/runs)\"\ntrap 'sleep 3; exit 0' TERM\nsleep 100000 &\nwait\n",
    )
    .expect("run.sh");
    std::fs::write(dir.join("version"), "v1\n").expect("version");
    dir
}

/// The mover's volume on the host.
fn mover_volume(data: &Path) -> PathBuf {
    data.join("volumes/mover/worker/1/data")
}

fn mover_runs(data: &Path) -> Vec<String> {
    std::fs::read_to_string(mover_volume(data).join("runs"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The mover's volume home as `lain volume list` shows it.
fn mover_home(kernel: &KernelProcess) -> Value {
    let listed = json(&kernel.lain_ok(&["volume", "list", "-a", "mover", "-o", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed:#}");
    listed[0].clone()
}

/// Deploys the mover on a kernel with nodes `local` and `n2` and returns the node its
/// instance runs on and the other one, once it wrote its first run.
fn deploy_mover(kernel: &KernelProcess, root: &Path, data: &Path) -> (String, String) {
    kernel.lain_ok(&["node", "add", "n2", "--memory", "2G"]);
    let app = mover(root);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "mover", "-o", "json"]));
    let home = instances(&view, "worker")[0]["node"]
        .as_str()
        .expect("node")
        .to_string();
    let other = if home == "local" { "n2" } else { "local" }.to_string();
    until("the first run", || {
        (mover_runs(data).len() == 1).then_some(())
    });
    (home, other)
}

/// The mover's running instance on `node`, once there is one (and no other).
fn mover_running_on(kernel: &KernelProcess, node: &str) -> Value {
    let view = kernel.wait_for("mover", "the instance on its node", |v| {
        let running: Vec<&Value> = instances(v, "worker")
            .into_iter()
            .filter(|i| i["state"]["state"] == "running")
            .collect();
        running.len() == 1 && running[0]["node"] == node
    });
    instances(&view, "worker")[0].clone()
}

/// Starts `lain volume migrate` with `args` in the background, waits until the volume home
/// records the migration, then kills the kernel with SIGKILL and starts it again.
fn kill_kernel_during_migration(kernel: &mut KernelProcess, args: &[&str]) {
    let mut migrate = kernel
        .lain_cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lain volume migrate");
    until("the migration to be recorded", || {
        mover_home(kernel)["migration"].is_object().then_some(())
    });
    kernel.kill9();
    let status = migrate.wait().expect("wait for lain");
    assert!(!status.success(), "the migration cannot have ended");
    kernel.restart();
}

#[test]
fn migrate_moves_an_instance_with_its_volume_through_a_final_backup_and_survives_kernel_kill_dash_nine()
 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    let (home, other) = deploy_mover(&kernel, tmp.path(), &data);
    std::fs::write(
        mover_volume(&data).join("note"),
        "written on the first node\n",
    )
    .expect("note");
    let before = mover_running_on(&kernel, &home);
    kernel.lain_ok(&["node", "add", "n3", "--memory", "2G"]);
    kernel.lain_ok(&["node", "maintain", "n3"]);

    // Refusals change nothing.
    let m = |args: &[&str]| {
        let mut all = vec!["volume", "migrate", "mover"];
        all.extend(args);
        kernel.lain_err(&all)
    };
    for (args, said) in [
        (
            &["worker", "1", "--to", "nowhere"][..],
            "no node named `nowhere`",
        ),
        (&["worker", "1", "--to", &home][..], "are on node"),
        (
            &["worker", "1", "--to", "n3"][..],
            "node n3 is in maintenance",
        ),
        (&["worker", "2", "--to", &other][..], "has no instance 2"),
        (&["web", "1", "--to", &other][..], "has no volumes"),
        (
            &["worker", "1", "--to", &other, "--backup", "99"][..],
            "has no backup 99",
        ),
        (
            &["worker", "1", "--cancel"][..],
            "has no unfinished migration",
        ),
    ] {
        let err = m(args);
        assert!(err.contains(said), "{args:?}: {err}");
    }
    let err = kernel.lain_err(&["volume", "migrate", "nope", "worker", "1", "--to", &other]);
    assert!(err.contains("nope"), "{err}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pid(&mover_running_on(&kernel, &home)), pid(&before));
    assert_eq!(mover_home(&kernel)["node"], home.as_str());
    assert!(mover_home(&kernel)["migration"].is_null());
    let listed = json(&kernel.lain_ok(&["backup", "list", "-a", "mover", "-o", "json"]));
    assert_eq!(listed, Value::Array(Vec::new()), "no backup was taken");
    assert_eq!(mover_runs(&data).len(), 1);

    // A kernel killed during the migration: the next one keeps the instance stopped and says
    // why, on no node at all.
    kill_kernel_during_migration(
        &mut kernel,
        &["volume", "migrate", "mover", "worker", "1", "--to", &other],
    );
    let view = kernel.wait_for("mover", "the report", |v| {
        problem(v, "worker").contains("lain volume migrate")
    });
    assert!(
        problem(&view, "worker").contains(&format!("moves its volumes to node {other}")),
        "{view:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let view = kernel.ps("mover");
    assert!(running(&view).is_empty(), "{view:#}");
    let pending = mover_home(&kernel);
    assert_eq!(
        (&pending["node"], &pending["migration"]["to"]),
        (&Value::from(home.as_str()), &Value::from(other.as_str())),
        "{pending:#}"
    );
    let table = kernel.lain_ok(&["volume", "list", "-a", "mover"]);
    assert!(
        table.contains(&format!("{home} (moving to {other}: ")),
        "{table}"
    );
    let err = kernel.lain_err(&["volume", "migrate", "mover", "worker", "1", "--to", "n2x"]);
    assert!(err.contains("no node named"), "{err}");
    kernel.lain_ok(&["node", "add", "n4", "--memory", "2G"]);
    let err = kernel.lain_err(&["volume", "migrate", "mover", "worker", "1", "--to", "n4"]);
    assert!(
        err.contains(&format!("is being moved to node {other}")),
        "{err}"
    );

    // Run again, it finishes: the final backup, restored, and the instance on the other node
    // with the files written on the first.
    let out = kernel.lain(&[
        "volume", "migrate", "mover", "worker", "1", "--to", &other, "-o", "json",
    ]);
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{progress}");
    assert!(progress.contains("restoring (verified)"), "{progress}");
    let done = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        (&done["from"], &done["to"], &done["running"]),
        (
            &Value::from(home.as_str()),
            &Value::from(other.as_str()),
            &Value::from(true)
        ),
        "{done:#}"
    );
    let moved = &done["volumes"][0];
    assert_eq!(
        (&moved["volume"], &moved["final_backup"], &moved["files"]),
        (&Value::from("/data"), &Value::from(true), &Value::from(2)),
        "{done:#}"
    );
    let backups = json(&kernel.lain_ok(&["backup", "list", "-a", "mover", "-o", "json"]));
    let finals: Vec<&Value> = backups
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["trigger"] == "migration" && b["outcome"] == "succeeded")
        .collect();
    assert_eq!(finals.len(), 1, "{backups:#}");
    assert_eq!(finals[0]["id"], moved["backup"]);
    mover_running_on(&kernel, &other);
    until("the run on the other node", || {
        (mover_runs(&data).len() == 2).then_some(())
    });
    let logs = kernel.lain_ok(&["logs", "worker", "-a", "mover"]);
    assert!(logs.contains("[1] runs: 2"), "{logs}");
    assert_eq!(
        std::fs::read_to_string(mover_volume(&data).join("note")).expect("note"),
        "written on the first node\n"
    );
    let now = mover_home(&kernel);
    assert_eq!(now["node"], other.as_str(), "{now:#}");
    assert!(now["migration"].is_null(), "{now:#}");
    let view = kernel.ps("mover");
    assert_eq!(problem(&view, "worker"), "", "{view:#}");
}

#[test]
fn migrate_restores_a_given_backup_when_the_node_is_gone_and_cancel_gives_a_move_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    let (home, other) = deploy_mover(&kernel, tmp.path(), &data);
    std::fs::write(mover_volume(&data).join("note"), "backed up\n").expect("note");
    let taken = json(&kernel.lain_ok(&["backup", "run", "mover", "worker", "-o", "json"]));
    let id = taken[0]["id"].as_u64().expect("backup id").to_string();
    assert_eq!(taken[0]["outcome"], "succeeded", "{taken:#}");
    std::fs::write(mover_volume(&data).join("note"), "after the backup\n").expect("note");

    // Its node is drained (as if lost): the instance stays there; a given backup moves it.
    kernel.lain_ok(&["node", "maintain", &home]);
    let err = kernel.lain_err(&[
        "volume", "migrate", "mover", "worker", "1", "--to", &other, "--backup", &id, "--backup",
        &id,
    ]);
    assert!(err.contains("both of volume /data"), "{err}");
    mover_running_on(&kernel, &home);
    let done = json(&kernel.lain_ok(&[
        "volume", "migrate", "mover", "worker", "1", "--to", &other, "--backup", &id, "-o", "json",
    ]));
    assert_eq!(done["volumes"][0]["final_backup"], false, "{done:#}");
    assert_eq!(done["volumes"][0]["backup"].to_string(), id, "{done:#}");
    mover_running_on(&kernel, &other);
    assert_eq!(
        std::fs::read_to_string(mover_volume(&data).join("note")).expect("note"),
        "backed up\n",
        "the volume holds what the backup held"
    );
    until("the run on the other node", || {
        (mover_runs(&data).len() == 2).then_some(())
    });
    let backups = json(&kernel.lain_ok(&["backup", "list", "-a", "mover", "-o", "json"]));
    assert_eq!(
        backups.as_array().map(Vec::len),
        Some(1),
        "no final backup: {backups:#}"
    );

    // A move back, interrupted by a kernel kill, given up: the instance runs again where its
    // volumes were, with them.
    kernel.lain_ok(&["node", "maintain", &home, "--off"]);
    kill_kernel_during_migration(
        &mut kernel,
        &["volume", "migrate", "mover", "worker", "1", "--to", &home],
    );
    kernel.wait_for("mover", "the report", |v| {
        problem(v, "worker").contains("lain volume migrate")
    });
    let given_up = json(&kernel.lain_ok(&[
        "volume", "migrate", "mover", "worker", "1", "--cancel", "-o", "json",
    ]));
    assert_eq!(given_up["to"], other.as_str(), "{given_up:#}");
    mover_running_on(&kernel, &other);
    let now = mover_home(&kernel);
    assert_eq!(now["node"], other.as_str(), "{now:#}");
    assert!(now["migration"].is_null(), "{now:#}");
    assert_eq!(
        std::fs::read_to_string(mover_volume(&data).join("note")).expect("note"),
        "backed up\n"
    );
    let audit = kernel.lain_ok(&["audit", "-o", "json"]);
    assert!(
        audit.contains("/api/v1/apps/mover/procs/worker/volumes/1/migrate"),
        "audited: {audit}"
    );
}
