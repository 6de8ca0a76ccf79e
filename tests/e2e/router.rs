//! The web router end to end, on the process runtime: the real `lain` binary, real instances,
//! real HTTP clients sending `Host` headers to the router's port.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::KernelProcess;

const SERVER: &str = r#"
import http.server, os
NAME = os.environ.get("LAIN_PROCNAME")
NO = os.environ.get("LAIN_INSTANCE_NO")
VERSION = os.environ.get("VERSION", "v1")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = f"{VERSION} {NAME} {NO} {self.path} {self.headers.get('X-Forwarded-Host')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn site(dir: &Path, version: &str) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("server.py"), SERVER).expect("server");
    std::fs::write(
        dir.join("lain.yaml"),
        format!(
            "appname: site\nbuild:\n  base: busybox\n  script: []\n\
             web:\n  cmd: python3 server.py\n  num_instances: 2\n  healthcheck: /healthz\n  env:\n    - VERSION={version}\n  mountpoint:\n    - shop.example.org\n    - /api\n\
             web.admin:\n  cmd: python3 server.py\n  mountpoint:\n    - admin.example.org/panel\n"
        ),
    )
    .expect("lain.yaml");
    dir.to_string_lossy().into_owned()
}

/// GET through the router with `host`; (status, body).
fn get(kernel: &KernelProcess, host: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    match agent
        .get(&format!("http://{}{path}", kernel.router))
        .header("Host", host)
        .call()
    {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn hosts_paths_prefixes_balancing_live_updates_and_unknown_hosts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let dir = site(&tmp.path().join("site"), "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    wait_until("routes", || get(&kernel, "shop.example.org", "/").0 == 200);

    let (status, body) = get(&kernel, "shop.example.org", "/hello?x=1");
    assert_eq!(status, 200);
    assert!(
        body.starts_with("v1 web ") && body.contains(" /hello?x=1 shop.example.org"),
        "{body}"
    );
    let (_, body) = get(&kernel, "SITE.lain.local:8080", "/");
    assert!(
        body.starts_with("v1 web "),
        "the default mountpoint, any case and port: {body}"
    );
    let (_, body) = get(&kernel, "site.lain.local", "/api/users");
    assert!(
        body.contains(" /users "),
        "a path mountpoint is stripped: {body}"
    );
    let (_, body) = get(&kernel, "admin.example.org", "/panel/users");
    assert!(body.starts_with("v1 admin 1 /users "), "{body}");
    let (status, body) = get(&kernel, "admin.example.org", "/other");
    assert_eq!(status, 404, "{body}");
    let (status, body) = get(&kernel, "nope.example.org", "/");
    assert_eq!(status, 404);
    assert!(
        body.contains("no route for host `nope.example.org`"),
        "{body}"
    );

    let seen = |n: usize| {
        (0..n)
            .map(|_| get(&kernel, "shop.example.org", "/").1)
            .filter_map(|b| b.split(' ').nth(2).map(str::to_string))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        seen(10),
        BTreeSet::from(["1".to_string(), "2".to_string()]),
        "balanced"
    );

    // Scaling updates the routes live.
    kernel.lain_ok(&["scale", "web", "-a", "site", "--num-instances", "3"]);
    wait_until("the third instance in the routes", || seen(9).contains("3"));
    kernel.lain_ok(&["scale", "web", "-a", "site", "--num-instances", "1"]);
    wait_until("only instance 1", || {
        seen(6) == BTreeSet::from(["1".to_string()])
    });
}

#[test]
fn a_rolling_upgrade_and_a_crash_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let dir = site(&tmp.path().join("site"), "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    wait_until("routes", || get(&kernel, "shop.example.org", "/").0 == 200);

    let kernel = Arc::new(kernel);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, v2) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (kernel, stop, ok, failed, v2) = (
                kernel.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
                v2.clone(),
            );
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = get(&kernel, "shop.example.org", "/");
                    if status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                        if body.starts_with("v2") {
                            v2.fetch_add(1, Ordering::Relaxed);
                        }
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("{status} {body}"));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                errors
            })
        })
        .collect();

    // A crash: one instance's process is killed; its requests go elsewhere, it comes back.
    let view: Value =
        serde_json::from_str(&kernel.lain_ok(&["ps", "-a", "site", "-o", "json"])).expect("json");
    let pid = view["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["proc"] == "web")
        .and_then(|i| i["state"]["pid"].as_i64())
        .expect("pid");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    std::thread::sleep(Duration::from_secs(3));

    // A rolling upgrade to v2.
    site(&tmp.path().join("site"), "v2");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = load
        .into_iter()
        .flat_map(|t| t.join().expect("load thread"))
        .collect();
    let (ok, failed, v2) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        v2.load(Ordering::Relaxed),
    );
    assert!(ok > 100, "the load ran: {ok} requests");
    assert_eq!(
        failed,
        0,
        "{failed} failed requests out of {}: {errors:?}",
        ok + failed
    );
    assert!(v2 > 0, "v2 served after the upgrade");
    let (_, body) = get(&kernel, "shop.example.org", "/");
    assert!(body.starts_with("v2 "), "{body}");
}

#[test]
fn the_exported_nginx_config_passes_nginx_t_and_serves_the_same_routes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let dir = site(&tmp.path().join("site"), "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    wait_until("routes", || {
        get(&kernel, "admin.example.org", "/panel/").0 == 200
    });
    let port = support::free_port();
    let snippet = kernel.lain_ok(&[
        "router",
        "nginx-config",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    assert!(
        snippet.contains("server_name shop.example.org;"),
        "{snippet}"
    );
    let nginx_dir = tmp.path().join("nginx");
    std::fs::create_dir_all(nginx_dir.join("logs")).expect("mkdir");
    std::fs::write(nginx_dir.join("lain.conf"), &snippet).expect("snippet");
    std::fs::write(
        nginx_dir.join("nginx.conf"),
        "daemon off;\npid nginx.pid;\nerror_log logs/error.log;\nevents {}\n\
         http {\n  access_log off;\n  client_body_temp_path tmp;\n  proxy_temp_path tmp;\n  fastcgi_temp_path tmp;\n  uwsgi_temp_path tmp;\n  scgi_temp_path tmp;\n  include lain.conf;\n}\n",
    )
    .expect("nginx.conf");
    std::fs::create_dir_all(nginx_dir.join("tmp")).expect("tmp");
    let nginx = |args: &[&str]| {
        let mut cmd = std::process::Command::new("nginx");
        cmd.arg("-p")
            .arg(&nginx_dir)
            .args(["-c", "nginx.conf"])
            .args(args);
        cmd
    };
    let test = nginx(&["-t"])
        .output()
        .expect("nginx -t (apt-get install nginx)");
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    let mut server = nginx(&[]).spawn().expect("nginx starts");
    let through_nginx = |host: &str, path: &str| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match agent
                .get(&format!("http://127.0.0.1:{port}{path}"))
                .header("Host", host)
                .call()
            {
                Ok(mut r) => {
                    return (
                        r.status().as_u16(),
                        r.body_mut().read_to_string().unwrap_or_default(),
                    );
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("nginx: {e}"),
            }
        }
    };
    for (host, path) in [
        ("shop.example.org", "/hello?x=1"),
        ("site.lain.local", "/api/users"),
        ("site.lain.local", "/api"),
        ("admin.example.org", "/panel/users"),
        ("admin.example.org", "/other"),
        ("nope.example.org", "/"),
    ] {
        let (status, body) = through_nginx(host, path);
        let (want_status, want) = get(&kernel, host, path);
        assert_eq!(
            status, want_status,
            "{host}{path}: nginx {body} / lain {want}"
        );
        if status == 200 {
            // Instance numbers may differ (each balances); the proc, path and host must not.
            let strip = |b: &str| {
                let w: Vec<&str> = b.split(' ').collect();
                format!("{} {} {}", w[1], w[3], w[4])
            };
            assert_eq!(strip(&body), strip(&want), "{host}{path}");
        }
    }
    // SIGTERM, so the master stops its workers too (SIGKILL would orphan them).
    let _ = std::process::Command::new("kill")
        .arg(server.id().to_string())
        .status();
    let _ = server.wait();
}
