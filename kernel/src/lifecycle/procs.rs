//! Operations on one proc of a deployed app: deploy or undeploy it alone (`lain deploy -p`,
//! `lain undeploy -p`), restart its instances (`lain restart`), and find the instance a command
//! runs in (`lain exec`).
//!
//! Deploying or undeploying one proc records a new deployment of the same release in which only
//! that proc differs, so `lain rollback` undoes it. As in LAIN, an undeployed proc comes back
//! with the next deploy of the whole app (which renders every proc of its `lain.yaml`).

use super::records::{AppRecord, Deployment, ProcPlan};
use super::view::InstanceView;
use super::{Lifecycle, LifecycleError, claims, plan};

impl Lifecycle {
    /// Deploys proc `proc` of `app` alone: renders it from the deployed release (which
    /// `release`, when given, must name) and puts it into the deployment, replacing its earlier
    /// plan or bringing it back after `lain undeploy -p`; the other procs are left as they are.
    pub fn deploy_proc(
        &self,
        app: &str,
        proc: &str,
        release: Option<&str>,
    ) -> Result<AppRecord, LifecycleError> {
        let record = self.app(app)?;
        let Some(current) = &record.deployed else {
            return Err(LifecycleError::Conflict(format!(
                "app `{app}` is not deployed: deploy the whole app first (`lain deploy`)"
            )));
        };
        if let Some(wanted) = release.filter(|r| *r != current.release) {
            return Err(LifecycleError::Invalid(format!(
                "proc `{proc}` would run release {wanted} while app `{app}` runs {}: a proc runs \
                 its app's release, so deploy the whole app to change it",
                current.release
            )));
        }
        let version = current.release.clone();
        let rendered = plan::render(self, &self.release(app, &version)?)?;
        let names: Vec<&str> = rendered.procs.iter().map(|p| p.name.as_str()).collect();
        let Some(mut plan) = rendered.procs.iter().find(|p| p.name == proc).cloned() else {
            return Err(LifecycleError::NotFound(format!(
                "release {version} of app `{app}` has no proc `{proc}` (procs: {})",
                names.join(", ")
            )));
        };
        self.check_runtime(std::slice::from_ref(&plan))?;
        self.check_names(
            std::slice::from_ref(&plan),
            &Default::default(),
            &Default::default(),
        )?;
        self.check_secrets(app, std::slice::from_mut(&mut plan))?;
        plan.stamp_plan()
            .map_err(|e| LifecycleError::Internal(anyhow::anyhow!("plan stamp: {e}")))?;
        let order: Vec<String> = rendered.procs.iter().map(|p| p.name.clone()).collect();
        let merged = |record: &AppRecord| -> Result<Vec<ProcPlan>, LifecycleError> {
            let Some(current) = record.deployed.as_ref().filter(|d| d.release == version) else {
                return Err(LifecycleError::Conflict(format!(
                    "app `{app}` changed its deployment meanwhile: try again"
                )));
            };
            Ok(with_proc(&current.procs, plan.clone(), &order))
        };
        self.update_app_claiming(
            app,
            |record| claims::routes_of(&merged(record)?),
            |record| {
                let procs = merged(record)?;
                let (use_services, use_resources) = record
                    .deployed
                    .as_ref()
                    .map(|d| (d.use_services.clone(), d.use_resources.clone()))
                    .unwrap_or_default();
                record.deploy(Deployment {
                    release: version.clone(),
                    deployed_at: crate::clock::unix_secs(),
                    procs,
                    use_services,
                    use_resources,
                    auto_rollback: true,
                });
                Ok(())
            },
            &[],
        )
    }

    /// Undeploys proc `proc` of `app` alone: its instances stop, the other procs are left as
    /// they are. The next deploy of the whole app runs it again.
    pub fn undeploy_proc(&self, app: &str, proc: &str) -> Result<AppRecord, LifecycleError> {
        self.update_app(app, |record| {
            let Some(current) = &record.deployed else {
                return Err(LifecycleError::Conflict(format!(
                    "app `{app}` is not deployed"
                )));
            };
            let procs = deployed_proc(app, &current.procs, proc)
                .map(|_| current.procs.iter().filter(|p| p.name != proc).cloned())?
                .collect();
            let next = Deployment {
                procs,
                // Nothing of it can fail to roll out: no automatic rollback to bring the proc
                // back.
                auto_rollback: false,
                ..current.clone()
            };
            record.deploy(next);
            Ok(())
        })
    }

    /// Restarts instance `instance` of proc `proc` of `app`, or every instance of it: each is
    /// replaced by a new one, one instance number at a time, the next once the previous new
    /// one is ready (procs that keep their node are stopped first, as in an upgrade).
    pub fn restart(
        &self,
        app: &str,
        proc: &str,
        instance: Option<u32>,
    ) -> Result<AppRecord, LifecycleError> {
        let record = self.app(app)?;
        let Some(deployed) = &record.deployed else {
            return Err(LifecycleError::Conflict(format!(
                "app `{app}` is not deployed"
            )));
        };
        let plan = deployed_proc(app, &deployed.procs, proc)?;
        if plan.completes() || plan.plan.schedule.is_some() {
            return Err(LifecycleError::Invalid(format!(
                "proc `{proc}` runs to completion: only procs that keep running are restarted"
            )));
        }
        if let Some(no) = instance {
            let view = self.status.view(record.clone());
            let numbers = numbers_of(&view.instances, proc);
            if !numbers.contains(&no) {
                return Err(LifecycleError::NotFound(format!(
                    "proc `{proc}` of app `{app}` has no instance {no} (instances: {})",
                    list(&numbers)
                )));
            }
        }
        self.update_app(app, |record| {
            let Some(deployed) = &record.deployed else {
                return Err(LifecycleError::Conflict(format!(
                    "app `{app}` is not deployed"
                )));
            };
            deployed_proc(app, &deployed.procs, proc)?;
            let restarts = record.restarts.entry(proc.to_string()).or_default();
            match instance {
                Some(no) => {
                    let n = restarts.numbers.entry(no).or_default();
                    *n = n.saturating_add(1);
                }
                None => restarts.all = restarts.all.saturating_add(1),
            }
            Ok(())
        })
    }

    /// The runtime name and number of the running instance of proc `proc` of `app` a command
    /// runs in: instance `instance`, or the lowest-numbered one; one of the deployed release and
    /// ready is preferred to one being replaced.
    pub fn exec_target(
        &self,
        app: &str,
        proc: &str,
        instance: Option<u32>,
    ) -> Result<(String, u32), LifecycleError> {
        let record = self.app(app)?;
        let Some(deployed) = &record.deployed else {
            return Err(LifecycleError::Conflict(format!(
                "app `{app}` is not deployed"
            )));
        };
        deployed_proc(app, &deployed.procs, proc)?;
        let release = deployed.release.clone();
        let view = self.status.view(record);
        let mut running: Vec<&InstanceView> = view
            .instances
            .iter()
            .filter(|i| i.proc == proc && i.state.is_running() && !i.retiring)
            .filter(|i| instance.is_none_or(|no| i.instance == no))
            .collect();
        running.sort_by_key(|i| (i.instance, i.release != release, !i.ready));
        match running.first() {
            Some(i) => Ok((i.name.clone(), i.instance)),
            None => {
                let which =
                    instance.map_or_else(|| "no instance".into(), |no| format!("no instance {no}"));
                Err(LifecycleError::Conflict(format!(
                    "proc `{proc}` of app `{app}` has {which} running (running: {})",
                    list(&numbers_of(
                        &view
                            .instances
                            .iter()
                            .filter(|i| i.state.is_running())
                            .cloned()
                            .collect::<Vec<_>>(),
                        proc
                    ))
                )))
            }
        }
    }
}

/// The deployed plan of proc `proc`, or an error naming the procs there are.
fn deployed_proc<'a>(
    app: &str,
    procs: &'a [ProcPlan],
    proc: &str,
) -> Result<&'a ProcPlan, LifecycleError> {
    procs.iter().find(|p| p.name == proc).ok_or_else(|| {
        let names: Vec<_> = procs.iter().map(|p| p.name.as_str()).collect();
        LifecycleError::NotFound(format!(
            "app `{app}` has no deployed proc `{proc}` (deployed: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        ))
    })
}

/// `procs` with `plan` in place of the proc of its name, or added where `order` (the
/// release's procs) puts it.
fn with_proc(procs: &[ProcPlan], plan: ProcPlan, order: &[String]) -> Vec<ProcPlan> {
    let mut out: Vec<ProcPlan> = procs
        .iter()
        .filter(|p| p.name != plan.name)
        .cloned()
        .collect();
    let rank = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
    let at = out
        .iter()
        .position(|p| rank(&p.name) > rank(&plan.name))
        .unwrap_or(out.len());
    out.insert(at, plan);
    out
}

/// The instance numbers of proc `proc` among `instances`, sorted, without repeats.
fn numbers_of(instances: &[InstanceView], proc: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = instances
        .iter()
        .filter(|i| i.proc == proc)
        .map(|i| i.instance)
        .collect();
    numbers.sort_unstable();
    numbers.dedup();
    numbers
}

fn list(numbers: &[u32]) -> String {
    if numbers.is_empty() {
        return "none".into();
    }
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::records::Restarts;

    fn plan(name: &str, stamp: &str) -> ProcPlan {
        serde_json::from_value(serde_json::json!({
            "name": name, "full_name": format!("a.worker.{name}"), "proc_type": "worker",
            "num_instances": 1, "filters": [], "labels": [], "stateful": false, "env": [],
            "plan_stamp": stamp,
            "plan": {
                "image": "", "entrypoint": null, "cmd": ["sleep", "1"], "user": null, "workdir": null,
                "env": [], "ports": [], "cpu": 0, "memory": 33554432, "health": null,
                "restart": {"policy": "Always", "max_restarts": 0, "backoff_initial": 0, "backoff_max": 0},
                "schedule": null, "placement": "Spread", "routes": [], "portal": null, "labels": [],
                "volumes": [], "kill_timeout": 10, "setup_time": 0
            }
        }))
        .expect("plan")
    }

    fn names(procs: &[ProcPlan]) -> Vec<(&str, &str)> {
        procs
            .iter()
            .map(|p| (p.name.as_str(), p.plan_stamp.as_str()))
            .collect()
    }

    #[test]
    fn a_proc_deployed_alone_replaces_its_plan_or_comes_back_in_the_release_order() {
        let order: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let deployed = [plan("a", "1"), plan("b", "1"), plan("c", "1")];
        assert_eq!(
            names(&with_proc(&deployed, plan("b", "2"), &order)),
            [("a", "1"), ("b", "2"), ("c", "1")]
        );
        let without_b = [plan("a", "1"), plan("c", "1")];
        assert_eq!(
            names(&with_proc(&without_b, plan("b", "2"), &order)),
            [("a", "1"), ("b", "2"), ("c", "1")]
        );
        assert_eq!(
            names(&with_proc(&[plan("c", "1")], plan("a", "2"), &order)),
            [("a", "2"), ("c", "1")]
        );
    }

    #[test]
    fn an_instance_runs_the_restarts_of_its_proc_and_of_its_number() {
        let mut r = Restarts::default();
        assert_eq!((r.of(1), r.of(2)), (0, 0));
        r.all = 1;
        r.numbers.insert(2, 1);
        assert_eq!((r.of(1), r.of(2)), (1, 2));
        r.all = u64::MAX;
        assert_eq!(r.of(2), u64::MAX);
    }
}
