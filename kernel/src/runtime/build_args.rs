//! Build arguments (`build_arg: NAME=value`): a value `$VAR` (or `${VAR}`) is LAIN's way of
//! passing the builder's environment into a build. The builder is the client: `lain build`
//! reads each referenced variable from its own environment and sends the values with the build
//! in the [`HEADER`] request header (base64 of a JSON object, at most [`MAX_VARS`] variables and
//! [`MAX_HEADER_BYTES`] bytes). The kernel expands `$VAR` from those values only, never from its
//! own environment; a variable the client did not send is empty (as an unset variable is in a
//! shell, and as LAIN had it), and the build says so in a warning. The values are not logged
//! and not stored: the release record keeps `lain.yaml`, which names the variables only.

use base64::Engine as _;
use std::collections::BTreeMap;

/// The request header carrying the client's values.
pub const HEADER: &str = "x-lain-build-args";
/// Most variables one build may send.
pub const MAX_VARS: usize = 64;
/// Longest the header may be (base64 included).
pub const MAX_HEADER_BYTES: usize = 16 << 10;

/// The variables a build sent: name to value.
pub type Sent = BTreeMap<String, String>;

/// The variable a `build_arg` value refers to (`$VAR` or `${VAR}`), if it is one.
pub fn variable(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('$')?;
    let name = rest
        .strip_prefix('{')
        .and_then(|r| r.strip_suffix('}'))
        .unwrap_or(rest);
    valid_name(name).then_some(name)
}

/// Whether `name` is an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`, at most 128).
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The value of build argument `name` whose `lain.yaml` value is `value`, with a warning when
/// it names a variable the client did not send.
pub fn resolve(name: &str, value: &str, sent: &Sent) -> (String, Option<String>) {
    match variable(value) {
        None => (value.to_string(), None),
        Some(var) => match sent.get(var) {
            Some(v) => (v.clone(), None),
            None => (
                String::new(),
                Some(format!(
                    "build_arg {name}={value}: the client sent no ${var} (unset where `lain build` ran), so it is empty"
                )),
            ),
        },
    }
}

/// Encodes `sent` as the header's value.
pub fn encode(sent: &Sent) -> Result<String, String> {
    check(sent)?;
    let json = serde_json::to_vec(sent).map_err(|e| e.to_string())?;
    let value = base64::engine::general_purpose::STANDARD.encode(json);
    if value.len() > MAX_HEADER_BYTES {
        return Err(format!(
            "the build arguments' values take {} bytes, more than the {MAX_HEADER_BYTES} a build may send",
            value.len()
        ));
    }
    Ok(value)
}

/// Decodes the header's value, refusing anything malformed or over the bounds.
pub fn decode(header: &[u8]) -> Result<Sent, String> {
    let bad = |why: String| format!("header {HEADER}: {why}");
    if header.len() > MAX_HEADER_BYTES {
        return Err(bad(format!(
            "{} bytes, more than {MAX_HEADER_BYTES}",
            header.len()
        )));
    }
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let sent: Sent = serde_json::from_slice(&json)
        .map_err(|e| bad(format!("not a JSON object of strings: {e}")))?;
    check(&sent).map_err(bad)?;
    Ok(sent)
}

fn check(sent: &Sent) -> Result<(), String> {
    if sent.len() > MAX_VARS {
        return Err(format!("{} variables, more than {MAX_VARS}", sent.len()));
    }
    match sent.keys().find(|k| !valid_name(k)) {
        Some(k) => Err(format!("`{k}` is not a variable name")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sent_values_are_expanded_and_the_kernel_environment_never_is() {
        // SAFETY: a variable of this test's own.
        unsafe { std::env::set_var("LAIN_TEST_KERNEL_SECRET", "kernel-env-secret") };
        let sent: Sent = [("TOKEN".to_string(), "from-client".to_string())].into();
        assert_eq!(resolve("T", "$TOKEN", &sent), ("from-client".into(), None));
        assert_eq!(resolve("T", "${TOKEN}", &sent).0, "from-client");
        assert_eq!(resolve("T", "plain", &sent), ("plain".into(), None));
        assert_eq!(resolve("T", "$not-a-name", &sent).0, "$not-a-name");
        let (value, warning) = resolve("K", "$LAIN_TEST_KERNEL_SECRET", &sent);
        assert_eq!(value, "", "never the kernel's environment");
        assert!(warning.is_some_and(|w| w.contains("$LAIN_TEST_KERNEL_SECRET")));
    }

    #[test]
    fn the_header_round_trips_and_bad_or_oversized_ones_are_refused() {
        let sent: Sent = [("A".to_string(), "x\ny é".to_string())].into();
        assert_eq!(decode(encode(&sent).expect("encode").as_bytes()), Ok(sent));
        for (header, why) in [
            (b"%%%".to_vec(), "not base64"),
            (
                base64::engine::general_purpose::STANDARD
                    .encode("[1]")
                    .into_bytes(),
                "JSON object",
            ),
            (
                base64::engine::general_purpose::STANDARD
                    .encode(r#"{"A B":"x"}"#)
                    .into_bytes(),
                "not a variable name",
            ),
            (vec![b'A'; MAX_HEADER_BYTES + 1], "more than"),
        ] {
            let err = decode(&header).expect_err(why);
            assert!(err.contains(why) && err.contains(HEADER), "{err}");
        }
        let many: Sent = (0..=MAX_VARS)
            .map(|i| (format!("V{i}"), String::new()))
            .collect();
        assert!(encode(&many).is_err());
    }
}
