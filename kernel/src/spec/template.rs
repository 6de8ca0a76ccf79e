//! Resource templates (`apptype: resource`): a resource's `lain.yaml` rendered for one client
//! with the parameters of its `use_resources` entry (LAIN's `render_instance_yaml`).
//!
//! Only scalar values are templates (keys never are), each rendered on its own with MiniJinja.
//! The result is a new `lain.yaml` for the app `resource.<res>.<client>`: `appname` becomes that
//! name, `apptype` is dropped. A rendered value that reads as an integer is written as one (LAIN
//! did the same, so `num_instances: "{{ replicas }}"` works); any other rendered value is written
//! quoted, so a parameter cannot inject YAML.
//!
//! A template is the resource author's code run inside the kernel, so it is bounded: only
//! `{{ expression }}` (no `{% statement %}`, which could loop or grow a variable), no `*` (which
//! repeats strings), a few filters that cannot grow their input, fuel per value, a low recursion
//! limit, and limits on a template's, a parameter's, a value's and the document's size. An
//! undefined parameter is an error naming it (strict undefined).

use super::load;
use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The longest scalar that is rendered as a template.
pub const MAX_TEMPLATE: usize = 1024;
/// The longest parameter value.
pub const MAX_PARAM: usize = 1024;
/// The most parameters one client passes.
pub const MAX_PARAMS: usize = 64;
/// The longest rendered value.
pub const MAX_VALUE: usize = 64 * 1024;
/// MiniJinja instructions one value may run.
pub const FUEL: u64 = 500;
/// MiniJinja's recursion limit while rendering.
const RECURSION: usize = 32;
/// The stack of the thread that renders: MiniJinja's parser and compiler recurse once per
/// operator of a chain like `a ~ a ~ a ...` (a 3 KB one overflowed a 2 MiB test thread), which
/// [`MAX_TEMPLATE`] bounds to a few hundred levels; this leaves a wide margin.
const STACK: usize = 32 << 20;
/// The filters a template may use: none of them can make a value much longer than its input.
const FILTERS: &[&str] = &["default", "d", "lower", "upper", "trim", "int", "string"];

/// Why a resource could not be rendered for a client; says which resource, which client and
/// where.
#[derive(Debug, thiserror::Error)]
#[error("resource `{resource}` rendered for `{client}`: {at}{why}")]
pub struct RenderError {
    /// The resource app.
    pub resource: String,
    /// The client app.
    pub client: String,
    /// The key path of the value (empty for the whole document).
    pub path: String,
    /// What went wrong.
    pub why: String,
    at: String,
}

/// The app a resource is instantiated as for a client: `resource.<res>.<client>`.
pub fn instance_name(resource: &str, client: &str) -> String {
    format!("resource.{resource}.{client}")
}

/// The resource and client of an instance name `resource.<res>.<client>`, if it is one.
pub fn instance_of(app: &str) -> Option<(&str, &str)> {
    let rest = app.strip_prefix("resource.")?;
    let (res, client) = rest.split_once('.')?;
    let plain = |s: &str| super::values::check_name(s).is_ok();
    (plain(res) && plain(client)).then_some((res, client))
}

/// Renders the resource `resource`'s `lain.yaml` `text` for `client` with `params`: the
/// instance's `lain.yaml`. Runs on a thread of its own with a [`STACK`]-sized stack.
pub fn render(
    resource: &str,
    client: &str,
    params: &BTreeMap<String, String>,
    text: &str,
) -> Result<String, RenderError> {
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("lain-template".into())
            .stack_size(STACK)
            .spawn_scoped(scope, || render_here(resource, client, params, text))
            .map_err(|e| format!("cannot start the rendering thread: {e}"))
            .and_then(|t| {
                t.join()
                    .map_err(|_| "the rendering thread panicked".to_string())
            })
            .unwrap_or_else(|why| {
                Err(RenderError {
                    resource: resource.to_string(),
                    client: client.to_string(),
                    path: String::new(),
                    at: String::new(),
                    why,
                })
            })
    })
}

fn render_here(
    resource: &str,
    client: &str,
    params: &BTreeMap<String, String>,
    text: &str,
) -> Result<String, RenderError> {
    let fail = |path: &str, why: String| RenderError {
        resource: resource.to_string(),
        client: client.to_string(),
        at: if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        },
        path: path.to_string(),
        why,
    };
    if params.len() > MAX_PARAMS {
        return Err(fail(
            "",
            format!("{} parameters; at most {MAX_PARAMS}", params.len()),
        ));
    }
    if let Some((name, _)) = params.iter().find(|(_, v)| v.len() > MAX_PARAM) {
        return Err(fail(
            "",
            format!("parameter `{name}` is longer than {MAX_PARAM} bytes"),
        ));
    }
    let doc = load::tree("lain.yaml", text)
        .map_err(|d| fail(&d.path, format!("line {}: {}", d.line, d.message)))?;
    let Node::Mapping(map) = &doc else {
        return Err(fail("", "lain.yaml is not a mapping of keys".into()));
    };
    let mut r = Renderer {
        env: environment(),
        params,
        out: String::new(),
    };
    r.top(map, &instance_name(resource, client))
        .map_err(|(path, why)| fail(&path, why))?;
    Ok(r.out)
}

fn environment() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION);
    env.add_filter("default", minijinja::filters::default);
    env.add_filter("d", minijinja::filters::default);
    env.add_filter("lower", minijinja::filters::lower);
    env.add_filter("upper", minijinja::filters::upper);
    env.add_filter("trim", minijinja::filters::trim);
    env.add_filter("int", minijinja::filters::int);
    env.add_filter("string", minijinja::filters::string);
    env
}

/// A failure at a key path.
type Failure = (String, String);

struct Renderer<'a> {
    env: Environment<'static>,
    params: &'a BTreeMap<String, String>,
    out: String,
}

impl Renderer<'_> {
    /// The document: `appname` replaced, `apptype` dropped, every other key rendered.
    fn top(&mut self, map: &MarkedMappingNode, name: &str) -> Result<(), Failure> {
        let _ = writeln!(self.out, "appname: {}", quote(name));
        for (key, value) in map.iter() {
            if matches!(key.as_str(), "appname" | "apptype") {
                continue;
            }
            self.entry(key.as_str(), value, key.as_str(), 0)?;
        }
        Ok(())
    }

    fn entry(&mut self, key: &str, value: &Node, path: &str, indent: usize) -> Result<(), Failure> {
        let _ = write!(self.out, "{:indent$}{}:", "", quote(key));
        self.value(value, path, indent)
    }

    /// A value after its key or `-`: a scalar on the same line, a collection on the next ones.
    fn value(&mut self, node: &Node, path: &str, indent: usize) -> Result<(), Failure> {
        if indent / 2 > load::MAX_DEPTH {
            return Err((path.to_string(), "nested too deep".into()));
        }
        match node {
            Node::Scalar(s) => {
                let text = self.scalar(s, path)?;
                self.out.push(' ');
                self.out.push_str(&text);
                self.out.push('\n');
            }
            Node::Mapping(m) if m.is_empty() => self.out.push_str(" {}\n"),
            Node::Sequence(items) if items.is_empty() => self.out.push_str(" []\n"),
            Node::Mapping(m) => {
                self.out.push('\n');
                for (k, v) in m.iter() {
                    self.entry(
                        k.as_str(),
                        v,
                        &super::yaml::join(path, k.as_str()),
                        indent + 2,
                    )?;
                }
            }
            Node::Sequence(items) => {
                self.out.push('\n');
                for (i, item) in items.iter().enumerate() {
                    let _ = write!(self.out, "{:w$}-", "", w = indent + 2);
                    self.value(item, &format!("{path}[{i}]"), indent + 4)?;
                }
            }
        }
        if self.out.len() > load::MAX_BYTES {
            return Err((
                path.to_string(),
                format!(
                    "the rendered lain.yaml is larger than {} bytes",
                    load::MAX_BYTES
                ),
            ));
        }
        Ok(())
    }

    /// A scalar as written in the rendered document.
    fn scalar(&self, s: &MarkedScalarNode, path: &str) -> Result<String, Failure> {
        let text = s.as_str();
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            // Kept as written: a plain scalar stays plain (so lain reads it as before).
            return Ok(if s.may_coerce() && plain(text) {
                text.to_string()
            } else {
                quote(text)
            });
        }
        let rendered = self.template(text).map_err(|why| (path.to_string(), why))?;
        Ok(if is_integer(&rendered) {
            rendered
        } else {
            quote(&rendered)
        })
    }

    /// Renders one template value.
    fn template(&self, text: &str) -> Result<String, String> {
        if text.len() > MAX_TEMPLATE {
            return Err(format!("a template is at most {MAX_TEMPLATE} bytes"));
        }
        if text.contains("{%") || text.contains("{#") {
            return Err(
                "only `{{ expression }}` is rendered in a resource template, not `{% ... %}` or `{# ... #}`"
                    .into(),
            );
        }
        if text.contains('*') {
            return Err("`*` is not allowed in a resource template".into());
        }
        let template = self
            .env
            .template_from_str(text)
            .map_err(|e| format!("not a template: {}", e.detail().unwrap_or("syntax error")))?;
        let mut out = Bounded(Vec::new());
        match template.render_captured_to(self.params, &mut out) {
            Ok(_) => String::from_utf8(out.0).map_err(|_| "the rendered value is not UTF-8".into()),
            Err(e) => Err(self.explain(&template, &e)),
        }
    }

    fn explain(&self, template: &minijinja::Template<'_, '_>, e: &minijinja::Error) -> String {
        match e.kind() {
            ErrorKind::UndefinedError => {
                let mut missing: Vec<String> = template
                    .undeclared_variables(false)
                    .into_iter()
                    .filter(|v| !self.params.contains_key(v))
                    .collect();
                missing.sort();
                if missing.is_empty() {
                    "an undefined value is used".into()
                } else {
                    format!(
                        "parameter {} is not given (add it to the client's use_resources entry, or use `|default(...)`)",
                        missing
                            .iter()
                            .map(|m| format!("`{m}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            }
            ErrorKind::OutOfFuel => format!("the template ran out of fuel ({FUEL} instructions)"),
            ErrorKind::UnknownFilter => format!(
                "{}; the filters allowed are {}",
                e.detail().unwrap_or("unknown filter"),
                FILTERS.join(", ")
            ),
            ErrorKind::WriteFailure => format!("a rendered value is longer than {MAX_VALUE} bytes"),
            _ => match e.detail() {
                Some(d) => format!("{}: {d}", e.kind()),
                None => e.kind().to_string(),
            },
        }
    }
}

/// A writer that refuses to hold more than [`MAX_VALUE`] bytes.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_VALUE {
            return Err(std::io::Error::other("value too long"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `text` can be written as a plain scalar in block context and read back the same.
fn plain(text: &str) -> bool {
    text.is_empty()
        || (text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-/".contains(&b))
            && !text.starts_with('-'))
}

fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.len() < 19 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `text` as a double-quoted YAML scalar (a JSON string is one).
fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests;
