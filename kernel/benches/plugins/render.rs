//! Part 3: a proc-type call, `web`'s `render`, next to the same plugin's fresh-instance costs.

use crate::instantiate::{FreshSamples, fresh_instance};
use crate::report::Render;
use crate::stats::Percentiles;
use crate::{WARMUP_SAMPLES, load, sample_count, strings};
use anyhow::{Result, anyhow};
use lain::plugin::bindings::types::{AppContext, EnvVar, Label, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

/// Times `web`'s `render` (a whole call: fresh store and instance, the call, the checks, the
/// store's drop) interleaved with the same plugin's fresh-instance figures.
pub fn bench_render(engine: &Arc<PluginEngine>) -> Result<Render> {
    let plugin = load(engine, "web")?;
    let web = ProcTypePlugin(&plugin);
    let ctx = AppContext {
        app: "bookshelf".into(),
        app_domain: "bookshelf".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    };
    let proc = web
        .validate(&web_proc(), &ctx)?
        .map_err(|problems| anyhow!("web refused the benchmark proc: {problems:?}"))?;

    let mut fresh = FreshSamples::default();
    let mut render = Vec::with_capacity(sample_count());
    for i in 0..WARMUP_SAMPLES + sample_count() {
        let sample = fresh_instance(&plugin)?;
        let start = Instant::now();
        let plan = web.render(&proc, &ctx)?;
        let elapsed = start.elapsed();
        black_box(plan);
        if i >= WARMUP_SAMPLES {
            fresh.push(sample);
            render.push(elapsed);
        }
    }
    let fresh = fresh.summary();
    let render = Percentiles::of(render);
    Ok(Render {
        plugin: "web".into(),
        samples: sample_count(),
        beyond_fresh_instance_p50_us: render.p50_us - fresh.full_cycle.p50_us,
        fresh,
        render,
    })
}

/// A typical web proc: two mountpoints, a health check, a few variables and labels.
pub fn web_proc() -> Proc {
    Proc {
        image: "registry.lain.local/bookshelf:release-1".into(),
        cmd: Some(strings(&["./server", "--port", "8080"])),
        env: [("LOG_LEVEL", "info"), ("DB_POOL", "8")]
            .map(|(name, value)| EnvVar {
                name: name.into(),
                value: value.into(),
            })
            .to_vec(),
        num_instances: 3,
        cpu: 500,
        memory: 256 << 20,
        mountpoints: strings(&["/api", "books.example.com"]),
        https_only: Some(true),
        healthcheck: Some("/healthz".into()),
        setup_time: 30,
        labels: vec![Label {
            key: "team".into(),
            value: "books".into(),
        }],
        filters: strings(&["constraint:group==default"]),
        ..Proc::with_lain_defaults("bookshelf", "web", "web")
    }
}
