//! Unit tests of the process runtime: working directories, placement checks and names.

use super::*;

#[test]
fn workdir_is_a_path_in_the_sandbox() {
    assert_eq!(working_dir(None), "/lain/app");
    assert_eq!(working_dir(Some("/lain/app/web")), "/lain/app/web");
    assert_eq!(working_dir(Some("sub")), "/lain/app/sub");
    assert_eq!(working_dir(Some("/srv")), "/srv");
}

#[test]
fn volumes_and_secret_files_go_only_where_a_sandbox_can_place_them() {
    let sandbox = Sandbox::new(&Config::default(), &[]).expect("sandbox");
    for ok in [
        "/lain/app/conf/db.toml",
        "/data",
        "/var/lib/mysql",
        "/lain/logs",
    ] {
        assert_eq!(check_place(&sandbox, "volume", ok), Ok(()), "{ok}");
    }
    for (bad, why) in [
        ("/usr/share/x", "/usr is shared read-only"),
        ("/etc/nginx/key.pem", "/etc is shared read-only"),
        ("/proc/x", "/proc is shared"),
        ("/lain/app", "not /, /lain or /lain/app"),
        ("/", "not /"),
        ("/lain/app/../../etc/x", "without `.` or `..`"),
        ("/lain/./app", "without `.` or `..`"),
        ("/lain/app/", "without `.` or `..`"),
        ("relative", "absolute"),
    ] {
        let err = check_place(&sandbox, "secret file", bad).expect_err(bad);
        assert!(
            err.contains(why) && err.starts_with("secret file"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn names_are_safe_file_names() {
    assert!(valid_name("hello.web.web.i1.r1.local"));
    for bad in ["", ".hidden", "a/b", "..", "a b"] {
        assert!(!valid_name(bad), "{bad}");
    }
}
