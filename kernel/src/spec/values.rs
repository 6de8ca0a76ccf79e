//! Pure parsers for the value syntaxes of `lain.yaml`: sizes, commands, ports, labels, filters,
//! paths. Each returns a message on refusal; the caller locates it.

use crate::plugin::bindings::types::{Port, Protocol, StreamPort};

/// Smallest memory limit accepted (LAIN's `lain scale` refused less).
pub const MIN_MEMORY: u64 = 4 << 20;

/// Names: appnames, proc names, service names (LAIN's schema pattern).
pub fn check_name(name: &str) -> Result<(), String> {
    let mut parts = name.split('-');
    let first = parts.next().unwrap_or_default();
    let ok = first.starts_with(|c: char| c.is_ascii_alphabetic())
        && first.chars().all(|c| c.is_ascii_alphanumeric())
        && parts.all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid name {name:?}: letters and digits in parts joined by single `-`, starting with a letter"
        ))
    }
}

/// A memory size: `32m`, `2G`, `512Mi`, `1.5g`, `2048MB`, or plain bytes. Binary units, as
/// LAIN's parser (humanfriendly) read the short forms docker users write.
pub fn memory(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid memory {text:?}: expected e.g. 256m or 2g"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "ki" | "kib" => 1 << 10,
        "m" | "mb" | "mi" | "mib" => 1 << 20,
        "g" | "gb" | "gi" | "gib" => 1 << 30,
        "t" | "tb" | "ti" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "invalid memory {text:?}: unknown unit {other:?} (use k, m, g or t)"
            ));
        }
    };
    let bytes = value * factor as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("invalid memory {text:?}: too large"));
    }
    let bytes = bytes as u64;
    if bytes < MIN_MEMORY {
        return Err(format!("memory {text:?} is below the minimum of 4m"));
    }
    Ok(bytes)
}

/// A shell-form command, split into words with POSIX shell quoting (LAIN split on whitespace
/// only, so `python -c "print 1"` became four words; here it is three). Without quotes the
/// result is the same as LAIN's.
pub fn command_words(text: &str) -> Result<Vec<String>, String> {
    shell_words::split(text).map_err(|e| format!("cannot split command {text:?}: {e}"))
}

/// A port number 1-65535.
pub fn port_number(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!(
            "invalid port {text:?}: expected a number from 1 to 65535"
        )),
    }
}

/// `port` entries: `8080`, `"8080"`, `"8080:tcp"`, `"53:udp"`.
pub fn port(text: &str) -> Result<Port, String> {
    let (number, proto) = text.split_once(':').unwrap_or((text, "tcp"));
    let protocol = protocol(proto).map_err(|e| format!("invalid port {text:?}: {e}"))?;
    Ok(Port {
        number: port_number(number)?,
        protocol,
    })
}

fn protocol(text: &str) -> Result<Protocol, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        other => Err(format!("unknown protocol {other:?} (tcp or udp)")),
    }
}

/// A stream port `src:dst[/proto]` (LAIN's `ports`); `src` must be 9500-10000.
pub fn stream_port(text: &str) -> Result<StreamPort, String> {
    let (ports, proto) = text.split_once('/').unwrap_or((text, "tcp"));
    let (src, dst) = ports.split_once(':').unwrap_or((ports, ports));
    let source = port_number(src)?;
    if !(9500..=10000).contains(&source) {
        return Err(format!(
            "src port should between 9500 and 10000, got {source}"
        ));
    }
    Ok(StreamPort {
        source,
        destination: port_number(dst)?,
        protocol: protocol(proto)?,
    })
}

/// A label `key:value` (LAIN: the last `:` splits, so `a:b:c` is key `a:b`). A key under
/// `lain.` (the kernel's) or holding `=` is refused.
pub fn label(text: &str) -> Result<(String, String), String> {
    let (key, value) = match text.rsplit_once(':') {
        Some((k, v)) if !k.trim().is_empty() => (k.trim(), v.trim()),
        _ => {
            return Err(format!(
                "not supported labels desc {text:?}: expected key:value"
            ));
        }
    };
    if key.starts_with("lain.") {
        return Err(format!(
            "label {key:?}: keys under `lain.` belong to the kernel (its own labels on every instance); use another prefix"
        ));
    }
    if key.contains('=') {
        return Err(format!(
            "label {key:?}: a key cannot hold `=` (labels are offered to scheduler plugins as key=value)"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// A scheduling filter `(constraint|affinity):key(==|!=)[~]value`.
pub fn filter(text: &str) -> Result<(), String> {
    let bad = || {
        format!("invalid filter {text:?}: expected constraint:key==value or affinity:key!=value")
    };
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    if !matches!(kind, "constraint" | "affinity") {
        return Err(bad());
    }
    let (key, value) = rest
        .split_once("==")
        .or_else(|| rest.split_once("!="))
        .ok_or_else(bad)?;
    let value = value.strip_prefix('~').unwrap_or(value);
    if key.is_empty() || value.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    Ok(())
}

/// Whether the filters pin a node group (`constraint:group==...` or `!=`).
pub fn has_group_filter(filters: &[String]) -> bool {
    filters
        .iter()
        .any(|f| f.starts_with("constraint:group==") || f.starts_with("constraint:group!="))
}

/// A container path: relative paths are under `/lain/app`; `.` and `..` are resolved.
pub fn container_path(text: &str) -> String {
    let joined = if text.starts_with('/') {
        text.to_string()
    } else {
        format!("/lain/app/{text}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A DNS name: at most 253 characters of dot-separated labels, each 1-63 letters, digits or
/// `-`, not starting or ending with `-` (mountpoint hosts, whoever names them: the `web` type
/// checks the same rule in its own crate).
pub fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An environment entry `NAME=value`.
pub fn env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("invalid env {text:?}: expected NAME=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory("32m"), Ok(32 << 20));
        assert_eq!(memory("32M"), Ok(32 << 20));
        assert_eq!(memory("2g"), Ok(2 << 30));
        assert_eq!(memory("2048MB"), Ok(2 << 30));
        assert_eq!(memory("1.5g"), Ok(3 << 29));
        assert_eq!(memory("512Mi"), Ok(512 << 20));
        assert!(memory("1m").unwrap_err().contains("minimum"));
        assert!(memory("12x").unwrap_err().contains("unknown unit"));
        assert!(memory("lots").is_err());
    }

    #[test]
    fn commands_honour_quotes() {
        assert_eq!(
            command_words(r#"python -c "print 1""#),
            Ok(vec!["python".into(), "-c".into(), "print 1".into()])
        );
        assert_eq!(
            command_words("./run.sh  --a b"),
            Ok(vec!["./run.sh".into(), "--a".into(), "b".into()])
        );
        assert!(command_words("echo \"unterminated").is_err());
    }

    #[test]
    fn ports_and_stream_ports() {
        assert_eq!(port("8080").map(|p| p.number), Ok(8080));
        assert_eq!(port("53:udp").map(|p| p.protocol), Ok(Protocol::Udp));
        assert!(port("80:tcp:foo").is_err());
        assert!(port("0").is_err());
        let s = stream_port("9600:5432/tcp").expect("valid");
        assert_eq!((s.source, s.destination), (9600, 5432));
        assert_eq!(stream_port("9601").map(|s| s.destination), Ok(9601));
        assert!(
            stream_port("8000:80")
                .unwrap_err()
                .contains("between 9500 and 10000")
        );
    }

    #[test]
    fn labels_filters_paths_env() {
        assert_eq!(label("a:b:c"), Ok(("a:b".into(), "c".into())));
        assert!(label("nocolon").is_err());
        assert!(label("lain.app:other").is_err_and(|e| e.contains("\"lain.app\"")));
        assert!(label("a=b:c").is_err_and(|e| e.contains("`=`")));
        assert_eq!(label("lainx.a:b"), Ok(("lainx.a".into(), "b".into())));
        assert!(filter("constraint:group==default").is_ok());
        assert!(filter("affinity:proctype!=~db").is_ok());
        assert!(filter("constraint:group=default").is_err());
        assert!(filter("spread:x==y").is_err());
        assert!(has_group_filter(&["constraint:group==db".into()]));
        assert_eq!(container_path("tmp/index"), "/lain/app/tmp/index");
        assert_eq!(container_path("/etc/../var/./x/"), "/var/x");
        assert_eq!(container_path("../../../etc"), "/etc");
        assert_eq!(env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(env("NOVALUE").is_err());
        assert!(check_name("hello-world2").is_ok());
        assert!(check_name("hello_world").is_err());
        assert!(check_name("9lives").is_err());
        assert!(check_name("a--b").is_err());
    }
}
