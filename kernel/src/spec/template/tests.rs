use super::*;

const CACHE: &str = r#"appname: cache
apptype: resource
build:
  base: redis:4
proc.redis:
  cmd: "redis-server --maxmemory {{ maxmemory|default('64mb') }}"
  memory: "{{ memory }}"
  num_instances: "{{ replicas|default(1) }}"
  port: 6379
  env:
    - "MODE={{ mode|upper }}"
    - PLAIN=yes
  quoted: "007"
"#;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The scalar at `path` of `text`, and whether lain may read it as a number or bool.
fn at(text: &str, path: &[&str]) -> (String, bool) {
    let mut node = load::tree("x", text).expect("the rendered text loads");
    for key in path {
        node = match key.parse::<usize>() {
            Ok(i) => node
                .as_sequence()
                .expect("a list")
                .get(i)
                .expect("item")
                .clone(),
            Err(_) => node
                .as_mapping()
                .expect("a map")
                .get_node(key)
                .expect(key)
                .clone(),
        };
    }
    let s = node.as_scalar().expect("a scalar");
    (s.as_str().to_string(), s.may_coerce())
}

#[test]
fn values_are_rendered_with_the_clients_parameters() {
    let p = params(&[("memory", "256m"), ("replicas", "2"), ("mode", "ha")]);
    let out = render("cache", "shop", &p, CACHE).expect("renders");
    assert_eq!(at(&out, &["appname"]).0, "resource.cache.shop");
    assert!(
        load::tree("x", &out)
            .unwrap()
            .as_mapping()
            .unwrap()
            .get_node("apptype")
            .is_none()
    );
    let redis = |k: &str| at(&out, &["proc.redis", k]);
    assert_eq!(redis("cmd").0, "redis-server --maxmemory 64mb");
    assert_eq!(redis("memory").0, "256m");
    // A rendered integer is written as one (LAIN did the same).
    assert!(out.contains("\"num_instances\": 2\n"), "{out}");
    // Values that are no templates are kept as written.
    assert!(out.contains("\"port\": 6379\n"), "{out}");
    assert_eq!(redis("quoted").0, "007");
    assert_eq!(at(&out, &["proc.redis", "env", "0"]).0, "MODE=HA");
    assert_eq!(at(&out, &["proc.redis", "env", "1"]).0, "PLAIN=yes");
}

#[test]
fn a_parameter_cannot_inject_yaml() {
    let p = params(&[("memory", "1m\nimage: evil\"\n  x: {"), ("mode", "a")]);
    let out = render("cache", "shop", &p, CACHE).expect("renders");
    assert_eq!(
        at(&out, &["proc.redis", "memory"]).0,
        "1m\nimage: evil\"\n  x: {"
    );
    let doc = load::tree("x", &out).unwrap();
    let redis = doc.as_mapping().unwrap().get_node("proc.redis").unwrap();
    assert!(redis.as_mapping().unwrap().get_node("image").is_none());
}

#[test]
fn an_undefined_parameter_is_an_error_naming_resource_client_key_and_parameter() {
    let p = params(&[("mode", "a")]);
    let err = render("cache", "shop", &p, CACHE).expect_err("memory is missing");
    assert_eq!(err.path, "proc.redis.memory");
    let msg = err.to_string();
    for part in ["`cache`", "`shop`", "proc.redis.memory", "`memory`"] {
        assert!(msg.contains(part), "{part} in {msg}");
    }
}

fn one(value: &str, p: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let text = format!("appname: r\nweb:\n  cmd: {}\n", quote(value));
    render("r", "c", p, &text)
}

#[test]
fn statements_and_string_repetition_are_refused() {
    let p = params(&[("x", "a")]);
    for (t, why) in [
        ("{% for i in x %}{{ i }}{% endfor %}", "not `{% ... %}`"),
        ("{# c #}", "not `{% ... %}`"),
        ("{{ x * 100000000 }}", "`*` is not allowed"),
        ("{{ x|join(',') }}", "the filters allowed are"),
        ("{{ range(10) }}", "unknown function"),
        ("{{ x", "not a template"),
    ] {
        let err = one(t, &p).expect_err(t).to_string();
        assert!(err.contains(why), "{t}: {err}");
        assert!(err.contains("web.cmd"), "{t}: {err}");
    }
}

#[test]
fn a_hostile_template_is_bounded() {
    let kib = "k".repeat(MAX_PARAM);
    let p = params(&[("x", &kib), ("y", "a")]);
    // Output: 100 KiB from a 300-byte template.
    let long = format!("{{{{ x{} }}}}", "~x".repeat(99));
    assert!(
        one(&long, &p)
            .expect_err("too long")
            .to_string()
            .contains("longer than")
    );
    // Instructions: a chain of lookups runs out of fuel.
    let busy = format!("{{{{ y{} }}}}", "~y".repeat(400));
    assert!(
        one(&busy, &p)
            .expect_err("fuel")
            .to_string()
            .contains("out of fuel")
    );
    // Depth: the longest chain and the deepest parentheses a template can hold end in an
    // error, not in a stack overflow of the kernel.
    let chain = format!("{{{{ y{} }}}}", "~y".repeat((MAX_TEMPLATE - 8) / 2));
    assert!(chain.len() <= MAX_TEMPLATE);
    assert!(one(&chain, &p).is_err());
    let n = (MAX_TEMPLATE - 8) / 2;
    let deep = format!("{{{{ {}y{} }}}}", "(".repeat(n), ")".repeat(n));
    assert!(deep.len() <= MAX_TEMPLATE);
    assert!(one(&deep, &p).is_err());
    // Template size.
    let big = format!("{{{{ y }}}}{}", " ".repeat(MAX_TEMPLATE));
    assert!(
        one(&big, &p)
            .expect_err("size")
            .to_string()
            .contains("at most")
    );
    // Parameters.
    let p = params(&[("x", &format!("{kib}k"))]);
    assert!(
        one("{{ x }}", &p)
            .expect_err("param")
            .to_string()
            .contains("longer than")
    );
}

#[test]
fn the_rendered_document_is_bounded() {
    // Each value renders to 60 KiB; twenty of them pass the document's limit.
    let p = params(&[("x", &"k".repeat(MAX_PARAM))]);
    let value = format!("{{{{ x{} }}}}", "~x".repeat(59));
    let mut text = String::from("appname: r\nweb:\n  env:\n");
    for _ in 0..20 {
        text.push_str(&format!("    - {}\n", quote(&value)));
    }
    let err = render("r", "c", &p, &text)
        .expect_err("too large")
        .to_string();
    assert!(
        err.contains("the rendered lain.yaml is larger than"),
        "{err}"
    );
}

#[test]
fn instance_names() {
    assert_eq!(instance_name("cache", "shop"), "resource.cache.shop");
    assert_eq!(instance_of("resource.cache.shop"), Some(("cache", "shop")));
    for bad in [
        "cache",
        "resource.cache",
        "resource..shop",
        "resource.a.b.c",
        "resource.a.B_",
    ] {
        assert_eq!(instance_of(bad), None, "{bad}");
    }
}
