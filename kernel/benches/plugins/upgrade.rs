//! Part 4: `lain plugin upgrade` latency, from the request to the swap, with Cranelift compiling
//! inside the request (as before tiered compilation) against tiered compilation (the Winch build
//! swapped in at once, Cranelift's made in the background); the time until the Cranelift build
//! is in; and what a call costs on each build, for the window a plugin runs on Winch.

use crate::report::{CallCost, Upgrade};
use crate::stats::{Latency, Ratio, median};
use crate::{WARMUP_SAMPLES, builtin, sample_count};
use anyhow::{Context, Result, bail};
use lain::plugin::bindings::authentication::{AuthResult, Credentials};
use lain::plugin::bindings::types::AppContext;
use lain::plugin::engine::{Compiler, PluginEngine};
use lain::plugin::kinds::auth::AuthPlugin;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::registry::Registry;
use lain::plugin::{Limits, LoadedPlugin, Manifest};
use lain::store::Store;
use lain::store::embedded::EmbeddedStore;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The plugins upgraded: an auth provider, an installed proc type, a built-in proc type.
pub const UPGRADED: [&str; 3] = ["jwt", "template", "web"];

/// Measured upgrades per plugin and way.
pub fn upgrade_rounds() -> usize {
    crate::mode::pick(21, 1)
}
/// Upgrades run and discarded first, per plugin and way.
pub const WARMUP_UPGRADES: usize = 1;
/// The longest a background build may take before the bench gives up.
const SETTLE: Duration = Duration::from_secs(300);

const JWT_ISSUER: &str = "https://sso.example.org";
const JWT_SECRET: &str = "0123456789abcdef0123456789abcdef";

/// The two ways an upgrade can compile.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    Inline,
    Tiered,
}

/// A registry on a store and a compile cache of its own.
struct Bed {
    registry: Registry,
    _dir: tempfile::TempDir,
}

impl Bed {
    fn open(
        engine: fn(Limits, Option<std::path::PathBuf>) -> anyhow::Result<Arc<PluginEngine>>,
    ) -> Result<Bed> {
        let dir = tempfile::tempdir()?;
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&dir.path().join("state.redb"))?);
        let engine = engine(Limits::default(), Some(dir.path().join("compiled")))?;
        let registry = Registry::open(engine, store, &[], BTreeMap::new())?;
        Ok(Bed {
            registry,
            _dir: dir,
        })
    }
}

/// A plugin's component and the manifest it is installed with.
struct Subject {
    /// What the report calls it: the built-in's or the fixture's name.
    label: &'static str,
    /// The plugin's name (its manifest's).
    name: String,
    bytes: Vec<u8>,
    manifest: String,
}

fn subject(label: &'static str) -> Result<Subject> {
    let bytes = match label {
        "template" => std::fs::read(lain_builtin_plugins::fixtures::TEMPLATE)
            .with_context(|| format!("reading {}", lain_builtin_plugins::fixtures::TEMPLATE))?,
        builtin_name => builtin(builtin_name)?.to_vec(),
    };
    let mut manifest =
        Manifest::embedded(&bytes)?.with_context(|| format!("{label} has no embedded manifest"))?;
    if label == "jwt" {
        // The JWT provider refuses to start without them.
        if let Some(config) = manifest.config.as_object_mut() {
            config.insert("issuer".into(), JWT_ISSUER.into());
            config.insert("audience".into(), "lain".into());
            config.insert("hs256_secret".into(), JWT_SECRET.into());
        }
    }
    Ok(Subject {
        label,
        name: manifest.name.clone(),
        manifest: toml::to_string(&manifest)?,
        bytes,
    })
}

/// `bytes` with a custom section holding `tag` appended: the same code under another SHA-256, so
/// no compile cache holds it and every upgrade compiles.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"lain-bench-variant";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// Upgrades each of [`UPGRADED`] again and again to a new variant of its component, both ways
/// in each round (the order alternating), each upgrade from a quiet machine (the previous one's
/// background build is in).
pub fn bench_upgrades() -> Result<Vec<Upgrade>> {
    let inline = Bed::open(PluginEngine::cranelift_only)?;
    let tiered = Bed::open(PluginEngine::new)?;
    let subjects = UPGRADED
        .into_iter()
        .map(subject)
        .collect::<Result<Vec<_>>>()?;
    let mut samples: Vec<Samples> = UPGRADED.iter().map(|_| Samples::default()).collect();
    for s in &subjects {
        for bed in [&inline, &tiered] {
            bed.registry
                .install(&variant(&s.bytes, "installed"), Some(&s.manifest))?;
            settle(&bed.registry)?;
        }
    }
    for round in 0..WARMUP_UPGRADES + upgrade_rounds() {
        for (s, samples) in subjects.iter().zip(&mut samples) {
            let ways = if round % 2 == 0 {
                [Way::Inline, Way::Tiered]
            } else {
                [Way::Tiered, Way::Inline]
            };
            let mut sample = Sample::default();
            for way in ways {
                let bed = if way == Way::Inline { &inline } else { &tiered };
                let bytes = variant(&s.bytes, &format!("round-{round}"));
                let start = Instant::now();
                let upgraded =
                    bed.registry
                        .upgrade_with(&s.name, &bytes, Some(&s.manifest), false)?;
                let swapped = start.elapsed();
                settle(&bed.registry)?;
                let optimized = start.elapsed();
                let expected = match way {
                    Way::Inline => Compiler::Cranelift,
                    Way::Tiered => Compiler::Winch,
                };
                if upgraded.plugin.compiled != expected {
                    bail!("{} was swapped in on {}", s.name, upgraded.plugin.compiled);
                }
                let after = bed.registry.show(&s.name).context("vanished")?;
                if after.compiled != Compiler::Cranelift || after.sha256 != upgraded.plugin.sha256 {
                    bail!("{}: the Cranelift build of the upgrade is not in", s.name);
                }
                match way {
                    Way::Inline => sample.inline = swapped,
                    Way::Tiered => {
                        sample.tiered = swapped;
                        sample.optimized = optimized;
                    }
                }
            }
            if round >= WARMUP_UPGRADES {
                samples.push(sample);
            }
        }
    }
    subjects
        .iter()
        .zip(samples)
        .map(|(s, samples)| {
            Ok(Upgrade {
                plugin: s.label.to_string(),
                component_kib: s.bytes.len() / 1024,
                upgrades: samples.0.len(),
                inline: Latency::of(samples.0.iter().map(|s| s.inline).collect()),
                tiered: Latency::of(samples.0.iter().map(|s| s.tiered).collect()),
                speedup: Ratio::of(
                    samples
                        .0
                        .iter()
                        .map(|s| s.inline.as_secs_f64() / s.tiered.as_secs_f64())
                        .collect(),
                ),
                cranelift_in: Latency::of(samples.0.iter().map(|s| s.optimized).collect()),
            })
        })
        .collect()
}

fn settle(registry: &Registry) -> Result<()> {
    if !registry.wait_optimized(SETTLE) {
        bail!("a background Cranelift build took over {SETTLE:?}");
    }
    Ok(())
}

/// One round of one plugin: each way's upgrade, and when the tiered one's Cranelift build was in.
#[derive(Default)]
struct Sample {
    inline: Duration,
    tiered: Duration,
    optimized: Duration,
}

#[derive(Default)]
struct Samples(Vec<Sample>);

impl Samples {
    fn push(&mut self, s: Sample) {
        self.0.push(s);
    }
}

/// What a call costs on the Winch build and on the Cranelift build of the same component: `jwt`
/// verifying an HS256 token (warm instances) and `web` rendering a plan (a fresh instance per
/// call), interleaved call by call.
pub fn bench_call_cost() -> Result<Vec<CallCost>> {
    let dir = tempfile::tempdir()?;
    // A cache of its own, empty: `load_tiered` gives the Winch build.
    let engine = PluginEngine::new(Limits::default(), Some(dir.path().join("compiled")))?;
    let mut costs = Vec::new();

    let jwt = subject("jwt")?;
    let manifest = Manifest::parse(&jwt.manifest)?;
    let builds = both_builds(&engine, &manifest, &jwt.bytes)?;
    let token = hs256_token()?;
    let creds = Credentials {
        scheme: "bearer".into(),
        token,
    };
    costs.push(interleaved(
        "jwt",
        "authenticate (HS256)",
        &builds,
        |plugin| match AuthPlugin(plugin).authenticate(&creds)? {
            AuthResult::Authenticated(principal) => {
                black_box(principal);
                Ok(())
            }
            other => bail!("the token was not accepted: {other:?}"),
        },
    )?);

    let web = subject("web")?;
    let manifest = Manifest::parse(&web.manifest)?;
    let builds = both_builds(&engine, &manifest, &web.bytes)?;
    let ctx = AppContext {
        app: "bookshelf".into(),
        app_domain: "bookshelf".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    };
    let [_, cranelift] = &builds;
    let proc = ProcTypePlugin(cranelift)
        .validate(&crate::render::web_proc(), &ctx)?
        .map_err(|problems| anyhow::anyhow!("web refused the benchmark proc: {problems:?}"))?;
    costs.push(interleaved("web", "render", &builds, |plugin| {
        black_box(ProcTypePlugin(plugin).render(&proc, &ctx)?);
        Ok(())
    })?);
    Ok(costs)
}

/// The Winch and the Cranelift build of one component, as two plugins.
fn both_builds(
    engine: &Arc<PluginEngine>,
    manifest: &Manifest,
    bytes: &[u8],
) -> Result<[Arc<LoadedPlugin>; 2]> {
    let winch = LoadedPlugin::load_tiered(engine, manifest.clone(), bytes, false, None)?;
    if winch.compiler() != Compiler::Winch {
        bail!("{} did not load on Winch", manifest.name);
    }
    let cranelift = LoadedPlugin::load(engine, manifest.clone(), bytes, false, None)?;
    Ok([Arc::new(winch), Arc::new(cranelift)])
}

/// Times `call` on both builds, call by call, and compares their medians.
fn interleaved(
    plugin: &str,
    call_name: &str,
    builds: &[Arc<LoadedPlugin>; 2],
    call: impl Fn(&LoadedPlugin) -> Result<()>,
) -> Result<CallCost> {
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut ratios = Vec::new();
    for i in 0..WARMUP_SAMPLES + sample_count() {
        let mut pair = [0.0; 2];
        for (k, build) in builds.iter().enumerate() {
            let start = Instant::now();
            call(build)?;
            pair[k] = start.elapsed().as_secs_f64() * 1e6;
        }
        if i >= WARMUP_SAMPLES {
            times[0].push(pair[0]);
            times[1].push(pair[1]);
            ratios.push(pair[0] / pair[1]);
        }
    }
    let [winch, cranelift] = times;
    Ok(CallCost {
        plugin: plugin.into(),
        call: call_name.into(),
        samples: sample_count(),
        winch_p50_us: median(winch),
        cranelift_p50_us: median(cranelift),
        winch_over_cranelift: Ratio::of(ratios),
    })
}

/// An HS256 token the `jwt` configuration above accepts, valid for an hour.
fn hs256_token() -> Result<String> {
    use base64::Engine as _;
    use hmac::Mac as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let signing_input = format!(
        "{}.{}",
        enc(serde_json::json!({"alg": "HS256", "typ": "JWT"})),
        enc(serde_json::json!({
            "sub": "carol", "groups": ["admins"], "iss": JWT_ISSUER, "aud": "lain",
            "exp": now + 3600, "iat": now
        }))
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes())?;
    mac.update(signing_input.as_bytes());
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    Ok(format!("{signing_input}.{signature}"))
}
