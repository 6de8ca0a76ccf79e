//! What should run: every deployed proc, with its release's image and (for portals) the client
//! apps it serves.

use super::context::Context;
use super::portals;
use crate::lifecycle::records::{ProcPlan, Restarts};
use crate::plugin::bindings::proc_rendering::PlacementMode;
use crate::schedule::Mode;
use std::collections::{BTreeMap, HashMap};

/// What one proc should be.
pub struct Desired {
    /// App name.
    pub app: String,
    /// Deployed release.
    pub release: String,
    /// When it was deployed (Unix seconds): a run that failed before is run again.
    pub deployed_at: i64,
    /// The release's image (or release directory).
    pub image: String,
    /// The proc as deployed, with the app's scale applied.
    pub plan: ProcPlan,
    /// For a portal: the client apps whose networks it joins.
    pub grants: Vec<portals::Grant>,
    /// For a scheduled proc: the runs that should have an instance (run id, which is the
    /// instance number -> its tick), set by `lifecycle::runs::ticker`; none for other procs.
    pub runs: Option<BTreeMap<u32, i64>>,
    /// The restarts asked of the proc (`lain restart`).
    pub restarts: Restarts,
}

impl Desired {
    /// How many instances the proc has and where they go, as its proc type rendered it
    /// (`lain:plugin@0.2.0`; plans of 0.1.0 types spread).
    pub fn mode(&self) -> Mode {
        match self.plan.plan.placement {
            PlacementMode::Spread => Mode::Spread,
            PlacementMode::PerNode => Mode::PerNode,
            PlacementMode::Singleton => Mode::Singleton,
        }
    }
}

/// Release images already read, by (app, release): a release never changes its image.
#[derive(Default)]
pub struct Images(HashMap<(String, String), String>);

/// Every proc that should run, by full name.
pub fn desired(ctx: &Context, images: &mut Images) -> anyhow::Result<BTreeMap<String, Desired>> {
    let mut out = BTreeMap::new();
    let apps = ctx.records.apps()?;
    for app in &apps {
        let Some(deployed) = &app.deployed else {
            continue;
        };
        let key = (app.name.clone(), deployed.release.clone());
        let image = match images.0.get(&key) {
            Some(image) => image.clone(),
            None => match ctx.records.release(&app.name, &deployed.release) {
                Ok(r) => {
                    images.0.insert(key, r.image.clone());
                    r.image
                }
                Err(e) => {
                    tracing::warn!(app = %app.name, "{e}");
                    continue;
                }
            },
        };
        for plan in &deployed.procs {
            let plan = app.effective(plan);
            let restarts = app.restarts.get(&plan.name).cloned().unwrap_or_default();
            out.insert(
                plan.full_name.clone(),
                Desired {
                    app: app.name.clone(),
                    release: deployed.release.clone(),
                    deployed_at: deployed.deployed_at,
                    image: image.clone(),
                    plan,
                    grants: Vec::new(),
                    runs: None,
                    restarts,
                },
            );
        }
    }
    portals::grant(&apps, &mut out);
    Ok(out)
}
