//! Resource apps end to end on the process runtime: the real `lain` binary (kernel and CLI), real
//! sandboxed processes. A resource (`apptype: resource`) is instantiated per client as
//! `resource.<res>.<client>` with the client's parameters rendered into it, updated by deploying
//! the instance, and removed with its route claims once the client stops using it, across a
//! `kill -9` of the kernel.
//! The Docker side (a resource's portal reached by the client) is in `docker.rs`.

mod support;

use std::path::Path;
use support::{KernelProcess, instances, until, write_app};

const CACHE: &str = "appname: cache
apptype: resource
build:
  base: busybox
  script: []
worker.store:
  cmd: \"sleep {{ seconds }}\"
  num_instances: \"{{ replicas|default(1) }}\"
  memory: \"{{ memory|default('32m') }}\"
web.admin:
  cmd: python3 server.py
  mountpoint:
    - \"{{ admin_host }}\"
";

fn client(uses: &str) -> String {
    format!(
        "appname: shop\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n{uses}"
    )
}

const USES: &str = "use_resources:
  cache:
    services: []
    seconds: \"74319\"
    replicas: 2
    memory: 48m
    admin_host: cache-admin.shop.example.org
";

/// Live processes whose command line is exactly `cmdline`.
fn running(cmdline: &str) -> usize {
    let wanted = format!("{}\0", cmdline.replace(' ', "\0"));
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| std::fs::read_to_string(e.path().join("cmdline")).is_ok_and(|c| c == wanted))
        .count()
}

/// The route claims, as JSON text.
fn claims(kernel: &KernelProcess) -> String {
    kernel.lain_ok(&["router", "claims", "-o", "json"])
}

fn build(kernel: &KernelProcess, dir: &Path) {
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
}

#[test]
fn a_resource_is_rendered_per_client_updated_and_removed_when_unused_across_kill_9() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    let cache = write_app(tmp.path(), "cache", CACHE);
    let server = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/server.py");
    std::fs::copy(server, cache.join("server.py")).expect("server.py");
    let shop = write_app(tmp.path(), "shop", &client(USES));
    build(&kernel, &cache);
    build(&kernel, &shop);

    // A resource is a template: deploying it is refused.
    let err = kernel.lain_err(&["deploy", "-a", "cache"]);
    assert!(err.contains("a resource is a template"), "{err}");

    // A client of a resource that does not exist is refused, naming it; nothing is deployed.
    let orphan = write_app(
        tmp.path(),
        "orphan",
        &client("use_resources:\n  nosuch:\n    services: []\n").replace("shop", "orphan"),
    );
    build(&kernel, &orphan);
    let err = kernel.lain_err(&["deploy", "-a", "orphan"]);
    assert!(
        err.contains("resource `nosuch` (used by `orphan`)"),
        "{err}"
    );
    assert!(kernel.ps("orphan")["release"].is_null());

    // The client's deploy instantiates the resource with the client's parameters.
    kernel.lain_ok(&["deploy", "-a", "shop"]);
    let view = kernel.wait_for("resource.cache.shop", "the instance", |v| {
        v["converged"] == true && instances(v, "store").len() == 2
    });
    for i in instances(&view, "store") {
        assert_eq!(i["memory"].as_u64(), Some(48 << 20), "{i}");
    }
    until("two `sleep 74319` processes", || {
        (running("sleep 74319") == 2).then_some(())
    });
    // Its rendered mountpoint is claimed by the instance.
    let admin = "cache-admin.shop.example.org";
    let held = claims(&kernel);
    assert!(
        held.contains(admin) && held.contains("resource.cache.shop"),
        "{held}"
    );

    // A new release of the resource reaches the instance when the instance is deployed.
    std::fs::write(
        cache.join("lain.yaml"),
        CACHE.replace("sleep {{ seconds }}", "sleep {{ seconds }}1"),
    )
    .expect("write");
    build(&kernel, &cache);
    kernel.lain_ok(&["deploy", "-a", "resource.cache.shop"]);
    until("the instance re-rendered", || {
        (running("sleep 743191") == 2 && running("sleep 74319") == 0).then_some(())
    });

    // The client stops using it; the kernel dies right after the deploy is recorded.
    std::fs::write(shop.join("lain.yaml"), client("")).expect("write");
    build(&kernel, &shop);
    kernel.lain_ok(&["deploy", "-a", "shop", "--no-wait"]);
    kernel.kill9();
    kernel.restart();
    until("the instance removed", || {
        let gone = !kernel
            .lain(&["ps", "-a", "resource.cache.shop"])
            .status
            .success();
        (gone && running("sleep 743191") == 0).then_some(())
    });
    kernel.wait_for("shop", "the client alone", |v| {
        v["converged"] == true && instances(v, "worker").len() == 1
    });
    // The removed instance's route claims went with it.
    let held = claims(&kernel);
    assert!(!held.contains(admin), "{held}");
}
