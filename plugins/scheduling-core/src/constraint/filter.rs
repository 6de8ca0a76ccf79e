//! LAIN's scheduling filters (LAIN reference §proc-keys `filters`, §scheduling): the Swarm-classic
//! expressions `(constraint|affinity):<key>(==|!=)[~]<value>`.

/// What a filter's key and value are matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `constraint:`: the labels of the node itself (`node` is the node name).
    Node,
    /// `affinity:`: the container labels of the instances running on the node.
    Host,
}

/// One parsed filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) target: Target,
    pub(crate) key: String,
    /// An exact value, or a glob where `*` stands for any run of characters.
    pub(crate) value: String,
    /// `!=`: the node must *not* match.
    pub(crate) negate: bool,
    /// `~`: applied only if at least one candidate satisfies it (Swarm's soft filters).
    pub(crate) soft: bool,
}

impl Filter {
    /// Parses `text`; the error names the filter and says what is wrong.
    pub(crate) fn parse(text: &str) -> Result<Filter, String> {
        let fail = |why: &str| format!("filter \"{text}\": {why}");
        let (kind, expr) = text
            .split_once(':')
            .ok_or_else(|| fail("expected constraint:<key>==<value> or affinity:<key>==<value>"))?;
        let target = match kind {
            "constraint" => Target::Node,
            "affinity" => Target::Host,
            _ => return Err(fail("expected constraint: or affinity: before the key")),
        };
        let at = expr
            .as_bytes()
            .windows(2)
            .position(|op| op == b"==" || op == b"!=")
            .ok_or_else(|| fail("expected == or !="))?;
        // `at` and `at + 2` sit around an ASCII operator, so both are char boundaries.
        let (key, value) = (
            expr.get(..at).unwrap_or(""),
            expr.get(at + 2..).unwrap_or(""),
        );
        let negate = expr.as_bytes().get(at) == Some(&b'!');
        let (soft, value) = match value.strip_prefix('~') {
            Some(v) => (true, v),
            None => (false, value),
        };
        if text.chars().any(char::is_whitespace) {
            return Err(fail("whitespace is not allowed"));
        }
        if key.is_empty() {
            return Err(fail("empty key"));
        }
        if key.contains('*') {
            return Err(fail("the key cannot be a glob"));
        }
        if key.contains('=') {
            return Err(fail("the key cannot contain ="));
        }
        if value.is_empty() {
            return Err(fail("empty value"));
        }
        if value.len() >= 2 && value.starts_with('/') && value.ends_with('/') {
            return Err(fail(
                "regular expressions are not supported; use an exact value or a glob with *",
            ));
        }
        Ok(Filter {
            target,
            key: key.to_string(),
            value: value.to_string(),
            negate,
            soft,
        })
    }

    /// Whether the value is a glob rather than an exact value.
    pub(crate) fn is_glob(&self) -> bool {
        self.value.contains('*')
    }

    /// Whether a label value matches this filter's value.
    pub(crate) fn matches(&self, value: &str) -> bool {
        glob_match(&self.value, value)
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters (possibly none) and
/// everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = t.get(ti) {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&pc) if pc == c => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// Splits a container label `key=value` (at the first `=`).
pub(crate) fn parse_label(text: &str) -> Result<(&str, &str), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(format!("label \"{text}\": expected key=value")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_forms() {
        let f = Filter::parse("constraint:group==default").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            f,
            Filter {
                target: Target::Node,
                key: "group".into(),
                value: "default".into(),
                negate: false,
                soft: false,
            }
        );
        let f = Filter::parse("affinity:proctype!=~db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (f.target, f.key.as_str(), f.value.as_str()),
            (Target::Host, "proctype", "db")
        );
        assert!(f.negate && f.soft);
        let f = Filter::parse("constraint:node==~node-*").unwrap_or_else(|e| panic!("{e}"));
        assert!(!f.negate && f.soft && f.matches("node-3") && !f.matches("db-1"));
        let f = Filter::parse("affinity:cc.bdp.lain.deployd.pg_name!=hello.web.web")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.key, "cc.bdp.lain.deployd.pg_name");
    }

    #[test]
    fn errors_name_the_filter_and_the_cause() {
        let err = |s| Filter::parse(s).err().unwrap_or_default();
        assert_eq!(
            err("constraint:group=default"),
            "filter \"constraint:group=default\": expected == or !="
        );
        assert_eq!(
            err("label:a==b"),
            "filter \"label:a==b\": expected constraint: or affinity: before the key"
        );
        assert!(err("group==default").contains("expected constraint:<key>==<value>"));
        assert!(err("constraint:==x").ends_with("empty key"));
        assert!(err("constraint:a==").ends_with("empty value"));
        assert!(err("constraint:a!=~").ends_with("empty value"));
        assert!(err("constraint:a*==x").ends_with("the key cannot be a glob"));
        assert!(err("constraint:group=default==x").ends_with("the key cannot contain ="));
        assert!(err("constraint:a== x").ends_with("whitespace is not allowed"));
        assert!(err("constraint:a==/x.*/").contains("regular expressions are not supported"));
    }

    #[test]
    fn globs() {
        for (p, t) in [
            ("a", "a"),
            ("*", ""),
            ("*", "abc"),
            ("a*c", "abbc"),
            ("*b*", "abc"),
            ("a**", "a"),
        ] {
            assert!(glob_match(p, t), "{p} should match {t}");
        }
        for (p, t) in [
            ("a", "ab"),
            ("a*c", "abd"),
            ("", "a"),
            ("a.c", "abc"),
            ("*x", "abc"),
        ] {
            assert!(!glob_match(p, t), "{p} should not match {t}");
        }
    }

    #[test]
    fn labels() {
        assert_eq!(parse_label("a:b=c=d"), Ok(("a:b", "c=d")));
        assert_eq!(parse_label("empty="), Ok(("empty", "")));
        assert_eq!(
            parse_label("x"),
            Err("label \"x\": expected key=value".into())
        );
        assert!(parse_label("=v").is_err());
    }
}
