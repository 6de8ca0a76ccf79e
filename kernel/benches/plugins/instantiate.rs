//! Part 1: fresh instances from a plugin's `InstancePre`, and what each step of getting one costs.

use crate::report::{Fresh, Instantiation};
use crate::stats::Percentiles;
use crate::{WARMUP_SAMPLES, builtin, load, sample_count};
use anyhow::Result;
use lain::plugin::LoadedPlugin;
use lain::plugin::engine::PluginEngine;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Measures fresh instances of each named built-in plugin, interleaving the plugins sample by
/// sample.
pub fn bench_instantiation(
    engine: &Arc<PluginEngine>,
    names: &[&str],
) -> Result<Vec<Instantiation>> {
    let plugins = names
        .iter()
        .map(|name| load(engine, name))
        .collect::<Result<Vec<_>>>()?;
    let mut samples: Vec<FreshSamples> = names.iter().map(|_| FreshSamples::default()).collect();
    for i in 0..WARMUP_SAMPLES + sample_count() {
        for (plugin, samples) in plugins.iter().zip(&mut samples) {
            let sample = fresh_instance(plugin)?;
            if i >= WARMUP_SAMPLES {
                samples.push(sample);
            }
        }
    }
    names
        .iter()
        .zip(samples)
        .map(|(name, samples)| {
            Ok(Instantiation {
                plugin: name.to_string(),
                component_kib: builtin(name)?.len() / 1024,
                samples: sample_count(),
                fresh: samples.summary(),
            })
        })
        .collect()
}

/// One sample of each way of getting a fresh instance.
pub struct FreshSample {
    instantiate: Duration,
    store_and_instantiate: Duration,
    full_cycle: Duration,
}

/// Times `LoadedPlugin::instantiate` alone, store creation + instantiate, and both plus the
/// store's drop.
pub fn fresh_instance(plugin: &LoadedPlugin) -> Result<FreshSample> {
    let mut store = plugin.new_store(None)?;
    let start = Instant::now();
    plugin.instantiate(&mut store)?;
    let instantiate = start.elapsed();
    drop(store);

    let start = Instant::now();
    let mut store = plugin.new_store(None)?;
    plugin.instantiate(&mut store)?;
    let store_and_instantiate = start.elapsed();
    drop(store);

    let start = Instant::now();
    let mut store = plugin.new_store(None)?;
    plugin.instantiate(&mut store)?;
    drop(store);
    let full_cycle = start.elapsed();

    Ok(FreshSample {
        instantiate,
        store_and_instantiate,
        full_cycle,
    })
}

/// The samples of [`fresh_instance`], by figure.
#[derive(Default)]
pub struct FreshSamples {
    instantiate: Vec<Duration>,
    store_and_instantiate: Vec<Duration>,
    full_cycle: Vec<Duration>,
}

impl FreshSamples {
    /// Adds one sample.
    pub fn push(&mut self, s: FreshSample) {
        self.instantiate.push(s.instantiate);
        self.store_and_instantiate.push(s.store_and_instantiate);
        self.full_cycle.push(s.full_cycle);
    }

    /// The percentiles of every figure.
    pub fn summary(self) -> Fresh {
        Fresh {
            instantiate: Percentiles::of(self.instantiate),
            store_and_instantiate: Percentiles::of(self.store_and_instantiate),
            full_cycle: Percentiles::of(self.full_cycle),
        }
    }
}
