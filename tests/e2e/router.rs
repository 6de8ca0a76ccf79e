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

/// The instances: they answer `<version> <proc> <instance> <path> <X-Forwarded-Host>
/// <X-Forwarded-Proto>`; `/healthz` fails while `$HEALTH_DIR/sick-<instance>` exists (the web
/// proc's volume, which the test writes on the host); an `Upgrade: echo` request is switched and
/// then echoes lines.
const SERVER: &str = r#"
import http.server, os
NAME = os.environ.get("LAIN_PROCNAME")
NO = os.environ.get("LAIN_INSTANCE_NO")
VERSION = os.environ.get("VERSION", "v1")
HEALTH_DIR = os.environ.get("HEALTH_DIR", "")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path == "/healthz" and os.path.exists(os.path.join(HEALTH_DIR, "sick-" + NO)):
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.headers.get("Upgrade") == "echo":
            self.send_response(101)
            self.send_header("Upgrade", "echo")
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            while True:
                line = self.rfile.readline()
                if not line:
                    break
                self.wfile.write(b"echo " + line)
                self.wfile.flush()
            self.close_connection = True
            return
        body = f"{VERSION} {NAME} {NO} {self.path} {self.headers.get('X-Forwarded-Host')} {self.headers.get('X-Forwarded-Proto')}\n".encode()
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
             web:\n  cmd: python3 server.py\n  num_instances: 2\n  healthcheck: /healthz\n  volumes:\n    - health\n  env:\n    - VERSION={version}\n    - HEALTH_DIR=/lain/app/health\n  mountpoint:\n    - shop.example.org\n    - /api\n\
             web.admin:\n  cmd: python3 server.py\n  mountpoint:\n    - admin.example.org/panel\n\
             web.secure:\n  cmd: python3 server.py\n  https_only: true\n  mountpoint:\n    - secure.example.org\n",
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

/// The instance numbers that answered `n` requests to `shop.example.org`.
fn instances_answering(kernel: &KernelProcess, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|_| get(kernel, "shop.example.org", "/").1)
        .filter_map(|b| b.split(' ').nth(2).map(str::to_string))
        .collect()
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    support::until(what, || check().then_some(()));
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

    let seen = |n: usize| instances_answering(&kernel, n);
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

/// The router's own settings for these tests: fast active health checks.
const FAST_CHECKS: &str =
    "[router]\nhealth = { interval_ms = 200, timeout_ms = 500, rise = 2, fall = 2 }\n";

#[test]
fn health_checks_take_an_instance_out_and_put_it_back_and_requests_are_logged_counted_and_upgraded()
{
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, FAST_CHECKS);
    let dir = site(&tmp.path().join("site"), "v1");
    // Instance 1's volume `health` (/lain/app/health in its sandbox), on the host.
    let health = data.join("volumes/site/web/1/lain/app/health");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    wait_until("routes", || get(&kernel, "shop.example.org", "/").0 == 200);
    let seen = |n: usize| instances_answering(&kernel, n);
    let both = BTreeSet::from(["1".to_string(), "2".to_string()]);
    wait_until("both instances", || seen(10) == both);

    // Instance 1's health check fails: within a few checks it takes no traffic, and no request
    // fails meanwhile (it still answers, only its health endpoint is broken).
    std::fs::write(health.join("sick-1"), "").expect("sick");
    let started = Instant::now();
    wait_until("instance 1 taken out", || {
        seen(8) == BTreeSet::from(["2".to_string()])
    });
    let taken_out = started.elapsed();
    assert!(
        (0..20).all(|_| get(&kernel, "shop.example.org", "/").1.split(' ').nth(2) == Some("2")),
        "instance 1 stays out while its check fails"
    );
    std::fs::remove_file(health.join("sick-1")).expect("healthy again");
    let started = Instant::now();
    wait_until("instance 1 put back", || seen(10) == both);
    eprintln!(
        "taken out after {taken_out:?}, put back after {:?}",
        started.elapsed()
    );

    // An upgrade (WebSocket-style) is tunnelled to an instance once it answers 101.
    let mut conn = std::net::TcpStream::connect(&kernel.router).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    use std::io::{BufRead, Write};
    conn.write_all(
        b"GET /ws HTTP/1.1\r\nHost: shop.example.org\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
    )
    .expect("upgrade request");
    let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("response head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: echo"),
        "{head}"
    );
    for word in ["ping", "pong"] {
        conn.write_all(format!("{word}\n").as_bytes())
            .expect("write");
        let mut echoed = String::new();
        reader.read_line(&mut echoed).expect("echo");
        assert_eq!(echoed, format!("echo {word}\n"));
    }
    drop((conn, reader));

    // Access logs: in the log store, through `lain logs --access`; unrouted requests apart.
    assert_eq!(get(&kernel, "shop.example.org", "/logged?q=1").0, 200);
    assert_eq!(get(&kernel, "nope.example.org", "/lost").0, 404);
    wait_until("the access log line", || {
        let logs = kernel.lain_ok(&["logs", "web", "-a", "site", "--access"]);
        logs.lines().any(|l| {
            l.contains("\"GET /logged?q=1 HTTP/1.1\" 200")
                && l.contains("host=shop.example.org")
                && l.contains("upstream=127.0.0.1:")
        })
    });
    let instance_logs = kernel.lain_ok(&["logs", "web", "-a", "site"]);
    assert!(
        !instance_logs.contains("/logged?q=1"),
        "instance output and access log stay apart"
    );
    wait_until("the unrouted log line", || {
        std::fs::read_to_string(data.join("logs/.router/unrouted.log")).is_ok_and(|l| {
            l.contains("\"GET /lost HTTP/1.1\" 404") && l.contains("host=nope.example.org")
        })
    });

    // Request counts and latencies in the metrics.
    // Behind the `metrics` right: the bootstrap token is an admin's.
    let metrics = support::get_as(&format!("{}/metrics", kernel.url), &kernel.token());
    let value = |prefix: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let web = ["app=\"site\"", "proc=\"web\""];
    let ok = value(
        "lain_router_requests_total{",
        &[web[0], web[1], "code=\"2xx\""],
    );
    assert!(ok >= 40.0, "2xx counted: {ok}\n{metrics}");
    let count = value("lain_router_request_duration_seconds_count{", &web);
    let inf = value(
        "lain_router_request_duration_seconds_bucket{",
        &[web[0], web[1], "le=\"+Inf\""],
    );
    assert!(count >= ok && inf == count, "{count} {inf}\n{metrics}");
    let lost = value("lain_router_requests_total{", &["app=\"\"", "code=\"4xx\""]);
    assert!(lost >= 1.0, "the unrouted 404 counted: {lost}\n{metrics}");
}

/// A CA and two server certificates: an RSA (PKCS#8) one for `shop.example.org` and
/// `secure.example.org`, an EC (SEC1) one for `*.lain.local`.
fn certificates(dir: &Path) {
    let run = |args: &[&str]| support::openssl(dir, args);
    run(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        "ca.key",
    ]);
    run(&[
        "req",
        "-new",
        "-x509",
        "-days",
        "1",
        "-key",
        "ca.key",
        "-subj",
        "/CN=lain-router-test-ca",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "shop.key",
    ]);
    run(&[
        "ecparam",
        "-genkey",
        "-name",
        "prime256v1",
        "-noout",
        "-out",
        "local.key",
    ]);
    for (name, sans) in [
        ("shop", "DNS:shop.example.org,DNS:secure.example.org"),
        ("local", "DNS:*.lain.local"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("subjectAltName={sans}\nextendedKeyUsage=serverAuth\n"),
        )
        .expect("ext");
        run(&[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-out",
            &format!("{name}.csr"),
        ]);
        run(&[
            "x509",
            "-req",
            "-days",
            "1",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }
}

/// `curl` (a real client, with HTTP/2 and SNI); (status, HTTP version, redirect, body).
fn curl(args: &[&str]) -> (String, String, String, String) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{http_version} %{redirect_url}",
        ])
        .args(args)
        .output()
        .expect("curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl {args:?}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, meta) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut meta = meta.split(' ').map(str::to_string);
    let mut next = || meta.next().unwrap_or_default();
    let (status, version, redirect) = (next(), next(), next());
    (status, version, redirect, body.trim_end().to_string())
}

#[test]
fn https_with_certificates_by_sni_http2_and_https_only_redirects() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("certs dir");
    certificates(&certs);
    let cert = |name: &str| certs.join(name).display().to_string();

    // A certificate that cannot be read stops the kernel at start, naming the entry and file.
    let bad_dir = tmp.path().join("bad");
    std::fs::create_dir_all(&bad_dir).expect("bad dir");
    let bad = bad_dir.join("lain.toml");
    std::fs::write(
        &bad,
        format!(
            "data_dir = {:?}\n[router]\nlisten = \"127.0.0.1:0\"\nhttps_listen = \"127.0.0.1:0\"\n\
             [[router.certificates]]\ncert = {:?}\nkey = {:?}\n",
            bad_dir.join("data").display().to_string(),
            cert("missing.pem"),
            cert("shop.key")
        ),
    )
    .expect("bad config");
    let mut child = std::process::Command::new(support::lain_bin())
        .args(["serve", "--config"])
        .arg(&bad)
        .env("LAIN_LISTEN", "127.0.0.1:0")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lain serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lain serve started with an unreadable certificate");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!status.success());
    assert!(
        stderr.contains("router.certificates[0]: certificate") && stderr.contains("missing.pem"),
        "{stderr}"
    );

    let https_port = support::free_port();
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "[router]\nhttps_listen = \"127.0.0.1:{https_port}\"\n\
             [[router.certificates]]\ncert = {:?}\nkey = {:?}\n\
             [[router.certificates]]\ncert = {:?}\nkey = {:?}\n",
            cert("shop.pem"),
            cert("shop.key"),
            cert("local.pem"),
            cert("local.key")
        ),
    );
    let dir = site(&tmp.path().join("site"), "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "site"]);
    wait_until("routes", || get(&kernel, "shop.example.org", "/").0 == 200);
    let http = format!("http://{}/a/b?c=1", kernel.router);
    wait_until("the https_only proc", || {
        curl(&["-H", "Host: secure.example.org", &http]).0 == "301"
    });

    // https_only: plain HTTP is sent to the router's HTTPS port, path and query kept.
    let (status, _, redirect, _) = curl(&["-H", "Host: secure.example.org", &http]);
    assert_eq!(status, "301");
    assert_eq!(
        redirect,
        format!("https://secure.example.org:{https_port}/a/b?c=1")
    );

    // HTTPS, verified against the CA: each name gets the certificate that covers it (SNI),
    // HTTP/2 by ALPN, HTTP/1.1 on request; the instance learns the scheme.
    let ca = certs.join("ca.pem").display().to_string();
    let https = |host: &str, path: &str, extra: &[&str]| {
        let resolve = format!("{host}:{https_port}:127.0.0.1");
        let url = format!("https://{host}:{https_port}{path}");
        let mut args = vec!["--cacert", ca.as_str(), "--resolve", resolve.as_str()];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };
    let (status, version, _, body) = https("secure.example.org", "/a?b=1", &["--http2"]);
    assert_eq!((status.as_str(), version.as_str()), ("200", "2"), "{body}");
    assert!(
        body.starts_with("v1 secure 1 /a?b=1 secure.example.org:") && body.ends_with(" https"),
        "{body}"
    );
    let (status, version, _, body) = https("site.lain.local", "/api/users", &["--http1.1"]);
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("200", "1.1"),
        "{body}"
    );
    assert!(
        body.starts_with("v1 web ") && body.contains(" /users "),
        "{body}"
    );
    let (status, _, _, body) = https("shop.example.org", "/", &[]);
    assert_eq!(status, "200", "{body}");
    // Plain HTTP/2 without TLS (h2c, prior knowledge) is served too.
    let (status, version, _, body) = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: shop.example.org",
        &format!("http://{}/h2c", kernel.router),
    ]);
    assert_eq!((status.as_str(), version.as_str()), ("200", "2"), "{body}");
    assert!(body.contains(" /h2c "), "{body}");
}

/// An outsider's deploy that mounts the owner's host, or a path under it, is refused naming the
/// owner; the router goes on serving the owner's instances there; the claims are shown.
#[test]
fn a_refused_takeover_leaves_the_owner_served() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hash = |t: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t));
    let config = format!(
        "[auth]\nregister_groups = [\"dev\"]\n[plugins.config.token]\ntokens = [{{ user = \"owner\", groups = [\"dev\"], sha256 = \"{}\" }}, {{ user = \"outsider\", groups = [\"dev\"], sha256 = \"{}\" }}]\n",
        hash("owner-token-0123456789"),
        hash("outsider-token-0123456789"),
    );
    let kernel = KernelProcess::start(&tmp.path().join("data"), &config);
    let as_user = |token: &str, args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        kernel.lain(&all)
    };
    let owner = "owner-token-0123456789";
    let outsider = "outsider-token-0123456789";

    let appa = tmp.path().join("appa");
    std::fs::create_dir_all(&appa).expect("mkdir");
    std::fs::write(appa.join("server.py"), SERVER).expect("server");
    std::fs::write(
        appa.join("lain.yaml"),
        "appname: appa\nbuild:\n  base: busybox\n  script: []\nweb:\n  cmd: python3 server.py\n  env:\n    - VERSION=appa\n",
    )
    .expect("lain.yaml");
    for args in [
        vec!["build", appa.to_str().expect("utf-8")],
        vec!["deploy", "-a", "appa"],
    ] {
        let out = as_user(owner, &args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    wait_until("appa is served", || {
        get(&kernel, "appa.lain.local", "/login")
            .1
            .starts_with("appa web ")
    });

    for (i, mountpoint) in ["appa.lain.local", "appa.lain.local/login"]
        .iter()
        .enumerate()
    {
        let evil = tmp.path().join(format!("evil{i}"));
        std::fs::create_dir_all(&evil).expect("mkdir");
        std::fs::write(
            evil.join("lain.yaml"),
            format!("appname: evil\nbuild:\n  base: busybox\n  script: []\nweb:\n  cmd: python3 server.py\n  mountpoint:\n    - {mountpoint}\n"),
        )
        .expect("lain.yaml");
        std::fs::write(evil.join("server.py"), SERVER).expect("server");
        let out = as_user(outsider, &["build", evil.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = as_user(outsider, &["deploy", "-a", "evil"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && err.contains("409")
                && err.contains("app `appa`")
                && err.contains(mountpoint),
            "{mountpoint}: {err}"
        );
    }
    for path in ["/", "/login", "/login/x"] {
        let (status, body) = get(&kernel, "appa.lain.local", path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.starts_with("appa web 1 "), "{path}: {body}");
    }

    let claims = support::json(&kernel.lain_ok(&["router", "claims", "-o", "json"]));
    let appa_holds = claims
        .as_array()
        .expect("claims")
        .iter()
        .any(|c| c["mountpoint"] == "appa.lain.local" && c["app"] == "appa");
    assert!(appa_holds, "{claims:#}");
    let table = kernel.lain_ok(&["router", "claims"]);
    assert!(
        table.contains("appa.lain.local") && table.contains("deploy"),
        "{table}"
    );
}

/// A TCP echo server: each line comes back as `<VERSION> <instance> <line>`. It listens on the
/// host port the process runtime gives its port 7000 (`PORT_7000`).
const ECHO: &str = r#"
import os, socketserver
NO = os.environ["LAIN_INSTANCE_NO"]
VERSION = os.environ.get("VERSION", "v1")
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(f"{VERSION} {NO} ".encode() + line)
            self.wfile.flush()
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(os.environ["PORT_7000"])), H).serve_forever()
"#;

/// A stream source port (9500-10000) nothing listens on now, never the same twice in this
/// process (the tests run in parallel, each with its own kernel).
fn free_stream_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = std::process::id() as usize % 500;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(n < 501, "no free port in 9500-10000");
        let port = 9500 + ((base + n) % 501) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// Writes the echo app `name` forwarding `source` to its port 7000.
fn echo_app(root: &Path, name: &str, source: u16, version: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("echo.py"), ECHO).expect("echo.py");
    std::fs::write(
        dir.join("lain.yaml"),
        format!(
            "appname: {name}\nbuild:\n  base: busybox\n  script: []\n\
             worker.echo:\n  cmd: python3 echo.py\n  num_instances: 2\n  setup_time: 1\n  env:\n    - VERSION={version}\n  ports:\n    - {source}:7000\n"
        ),
    )
    .expect("lain.yaml");
    dir.to_string_lossy().into_owned()
}

/// One line through the stream port: the echo's answer, or the error.
fn echo_line(source: u16, line: &str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", source)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(answer.trim_end().to_string())
}

/// A TCP stream port forwards to the proc's instances, spread over both, shown by `lain ps` and
/// `lain router streams`; a rolling upgrade under load refuses no connection.
#[test]
fn a_stream_port_forwards_tcp_spread_over_instances_and_through_an_upgrade() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let source = free_stream_port();
    let dir = echo_app(tmp.path(), "tcpecho", source, "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "tcpecho"]);
    wait_until("both instances behind the stream port", || {
        let streams = support::json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
        streams[0]["backends"]
            .as_array()
            .is_some_and(|b| b.len() == 2)
    });

    let answer = echo_line(source, "hello").expect("an answer through the stream port");
    assert!(
        answer.starts_with("v1 ") && answer.ends_with(" hello"),
        "{answer}"
    );
    let seen: BTreeSet<String> = (0..20)
        .filter_map(|_| echo_line(source, "x").ok())
        .filter_map(|a| a.split(' ').nth(1).map(str::to_string))
        .collect();
    assert_eq!(seen, BTreeSet::from(["1".into(), "2".into()]), "spread");

    let view = kernel.ps("tcpecho");
    let procs = view["procs"].as_array().expect("procs");
    assert_eq!(
        procs[0]["stream_ports"],
        serde_json::json!([format!("{source}:7000/tcp")]),
        "{view:#}"
    );
    assert!(
        kernel
            .lain_ok(&["ps", "-a", "tcpecho"])
            .contains(&format!("{source}:7000/tcp")),
    );
    let streams = support::json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
    assert_eq!(streams[0]["source"], source);
    assert_eq!(streams[0]["app"], "tcpecho");
    assert_eq!(streams[0]["listening"], true);
    assert!(streams[0]["connections"].as_u64().is_some_and(|n| n >= 21));
    let table = kernel.lain_ok(&["router", "streams"]);
    assert!(
        table.contains(&source.to_string()) && table.contains("tcpecho/echo"),
        "{table}"
    );

    // A rolling upgrade to v2 under load: every connection is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut ok, mut v2, mut errors) = (0usize, 0usize, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    match echo_line(source, "load") {
                        Ok(a) => {
                            ok += 1;
                            v2 += usize::from(a.starts_with("v2 "));
                        }
                        Err(e) => errors.push(e),
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                (ok, v2, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    echo_app(tmp.path(), "tcpecho", source, "v2");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "tcpecho"]);
    kernel.wait_for("tcpecho", "the upgrade", |v| {
        v["converged"] == true
            && v["instances"]
                .as_array()
                .is_some_and(|i| i.iter().all(|i| i["release"] == v["release"]))
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut v2, mut errors) = (0, 0, Vec::new());
    for t in load {
        let (o, v, e) = t.join().expect("load thread");
        ok += o;
        v2 += v;
        errors.extend(e);
    }
    assert!(ok > 50, "the load ran: {ok} connections");
    assert!(
        errors.is_empty(),
        "{} of {} failed: {errors:?}",
        errors.len(),
        ok + errors.len()
    );
    assert!(v2 > 0, "v2 answered after the upgrade");
}

/// A second app asking for a stream port another app holds is refused naming the owner, and
/// nothing changes: it is not deployed, the owner keeps the port. A port the router cannot bind
/// is reported by `lain router streams`.
#[test]
fn a_taken_stream_port_refuses_the_deploy_naming_its_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let source = free_stream_port();
    let dir = echo_app(tmp.path(), "owner", source, "owner");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "owner"]);
    wait_until("the owner answers", || {
        echo_line(source, "x").is_ok_and(|a| a.starts_with("owner "))
    });

    let other = echo_app(tmp.path(), "other", source, "other");
    kernel.lain_ok(&["build", &other]);
    let err = kernel.lain_err(&["deploy", "-a", "other"]);
    assert!(
        err.contains("409")
            && err.contains(&format!("stream port {source}"))
            && err.contains("app `owner`"),
        "{err}"
    );
    let view = kernel.ps("other");
    assert!(view["release"].is_null(), "nothing deployed: {view:#}");
    assert!(
        view["procs"].as_array().is_some_and(Vec::is_empty),
        "{view:#}"
    );
    let streams = support::json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
    assert_eq!(streams.as_array().map(Vec::len), Some(1), "{streams:#}");
    assert_eq!(streams[0]["app"], "owner");
    for _ in 0..5 {
        let a = echo_line(source, "x").expect("the owner still answers");
        assert!(a.starts_with("owner "), "{a}");
    }

    // Once the owner is undeployed the port is free to the other app.
    kernel.lain_ok(&["undeploy", "-a", "owner"]);
    kernel.lain_ok(&["deploy", "-a", "other"]);
    wait_until("the other app answers", || {
        echo_line(source, "x").is_ok_and(|a| a.starts_with("other "))
    });

    // A port something else holds is reported, not fatal.
    let busy_port = free_stream_port();
    let _busy = std::net::TcpListener::bind(("127.0.0.1", busy_port)).expect("bind");
    let busy = echo_app(tmp.path(), "busy", busy_port, "busy");
    kernel.lain_ok(&["build", &busy]);
    kernel.lain_ok(&["deploy", "-a", "busy"]);
    wait_until("the bind failure is reported", || {
        let streams = support::json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
        streams.as_array().is_some_and(|s| {
            s.iter().any(|s| {
                s["source"] == busy_port
                    && s["listening"] == false
                    && s["error"].as_str().is_some_and(|e| e.contains("in use"))
            })
        })
    });
    assert!(echo_line(source, "x").is_ok_and(|a| a.starts_with("other ")));
    assert!(
        kernel
            .logs()
            .contains(&format!("cannot listen on stream port {busy_port}")),
        "the log says why"
    );
}

/// The UDP echo: each datagram is answered `<version> <instance> <datagram>` to its sender.
const UDP_ECHO: &str = r#"
import os, socket
NO = os.environ["LAIN_INSTANCE_NO"]
VERSION = os.environ.get("VERSION", "v1")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(os.environ["PORT_7000_UDP"])))
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(f"{VERSION} {NO} ".encode() + data, peer)
"#;

/// Writes the UDP echo app `name` forwarding `source`/udp to its port 7000/udp.
fn udp_echo_app(root: &Path, name: &str, source: u16, version: &str) -> String {
    let dir = echo_app(root, name, source, version);
    std::fs::write(Path::new(&dir).join("echo.py"), UDP_ECHO).expect("echo.py");
    support::edit_app(Path::new(&dir), |y| y.replace(":7000\n", ":7000/udp\n"));
    dir
}

/// One datagram from `client` through the stream port and the answer, if one came within 2 s.
fn udp_ask(client: &std::net::UdpSocket, source: u16, what: &str) -> Option<String> {
    client.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    client
        .send_to(what.as_bytes(), ("127.0.0.1", source))
        .ok()?;
    let mut buf = [0u8; 2048];
    let n = client.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The row of `source` in `lain router streams -o json`.
fn stream_row(kernel: &KernelProcess, source: u16) -> Value {
    let streams = support::json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
    streams
        .as_array()
        .and_then(|s| s.iter().find(|s| s["source"] == source).cloned())
        .unwrap_or(Value::Null)
}

/// A UDP stream port forwards datagrams to the proc's instances: each client gets its own
/// replies from one instance, two clients are spread over both; it is shown by `lain ps` and
/// `lain router streams`; a flood from more addresses than the session bound holds no more
/// sessions than the bound and the clients already served go on; after an upgrade the sessions
/// to the gone instances end and the next datagram reaches a new one.
#[test]
fn a_udp_stream_port_forwards_datagrams_per_client_session_within_the_bound() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let source = free_stream_port();
    let dir = udp_echo_app(tmp.path(), "udpecho", source, "v1");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "udpecho"]);
    wait_until("both instances behind the UDP stream port", || {
        stream_row(&kernel, source)["backends"]
            .as_array()
            .is_some_and(|b| b.len() == 2)
    });
    let view = kernel.ps("udpecho");
    assert_eq!(
        view["procs"][0]["stream_ports"][0],
        format!("{source}:7000/udp"),
        "{view:#}"
    );
    let table = kernel.lain_ok(&["router", "streams"]);
    assert!(
        table.contains(&format!("{source}/udp")) && table.contains("udpecho/echo"),
        "{table}"
    );

    let one = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let two = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let a = udp_ask(&one, source, "one").expect("a reply to one");
    let b = udp_ask(&two, source, "two").expect("a reply to two");
    assert!(a.starts_with("v1 ") && a.ends_with(" one"), "{a}");
    assert!(b.starts_with("v1 ") && b.ends_with(" two"), "{b}");
    assert_ne!(a, b.replace(" two", " one"), "two clients, two instances");
    for i in 0..5 {
        let again = udp_ask(&one, source, &format!("one{i}")).expect("a reply");
        assert_eq!(
            again,
            a.replace(" one", &format!(" one{i}")),
            "one keeps its instance"
        );
    }

    // A flood from new addresses, in bursts of 100 (a burst larger than the socket's receive
    // buffer loses datagrams before the router reads them), until the router drops some: at
    // most 1024 sessions, the rest dropped and counted; the clients already served are still
    // answered.
    let mut row = Value::Null;
    for _ in 0..60 {
        for _ in 0..100 {
            let c = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            c.send_to(b"flood", ("127.0.0.1", source)).expect("send");
        }
        std::thread::sleep(Duration::from_millis(100));
        row = stream_row(&kernel, source);
        if row["dropped"].as_u64().is_some_and(|d| d > 0) {
            break;
        }
    }
    assert_eq!(row["active"], 1024, "{row:#}");
    assert!(row["dropped"].as_u64().is_some_and(|d| d > 0), "{row:#}");
    assert!(udp_ask(&one, source, "still").is_some_and(|r| r.ends_with(" still")));
    assert!(udp_ask(&two, source, "still").is_some_and(|r| r.ends_with(" still")));

    // An upgrade: the old instances go, their sessions end, and one reaches v2.
    udp_echo_app(tmp.path(), "udpecho", source, "v2");
    kernel.lain_ok(&["build", &dir]);
    kernel.lain_ok(&["deploy", "-a", "udpecho"]);
    kernel.wait_for("udpecho", "the upgrade", |v| {
        v["converged"] == true
            && v["instances"]
                .as_array()
                .is_some_and(|i| i.iter().all(|i| i["release"] == v["release"]))
    });
    wait_until("one answered by v2", || {
        udp_ask(&one, source, "new").is_some_and(|r| r.starts_with("v2 ") && r.ends_with(" new"))
    });
}
