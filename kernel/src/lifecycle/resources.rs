//! Resource instances (LAIN's `use_resources`): a client that uses resource `res` gets the app
//! `resource.<res>.<client>`, rendered from `res`'s newest release with the client's parameters
//! ([`crate::spec::template`]), deployed in the same compare-and-set as the client's deployment.
//!
//! - A client's deploy renders and checks every instance before anything is written, and fails
//!   naming the resource when it does not exist, has no release, is no resource or renders badly.
//! - `lain deploy resource.<res>.<client>` renders the instance again from `res`'s newest (or the
//!   given) release with the parameters of the client's current deployment.
//! - An instance whose client no longer uses it (deployed without it, undeployed, gone) is
//!   removed by the reconciler ([`collect`]), level-triggered, so a kernel
//!   killed between the two steps removes it on its next pass.
//!
//! The instance is owned by its client: its maintainers are the client's
//! ([`crate::auth`] maps the name), and who may deploy the client causes its instances.

use super::claims::{self, ProcRoute};
use super::records::{self, AppRecord, Deployment, ProcPlan, ReleaseRecord};
use super::{Lifecycle, LifecycleError, plan};
use crate::spec::model::UseResource;
use crate::spec::{AppType, template};
use crate::store::{Expect, Op, StoreError, put_json};
use std::collections::BTreeMap;

/// A resource instance ready to be written with its client's deployment.
pub struct Instance {
    /// `resource.<res>.<client>`.
    pub name: String,
    /// Its release: the resource's image, the rendered `lain.yaml`.
    pub release: ReleaseRecord,
    /// Its procs, rendered and checked.
    pub procs: Vec<ProcPlan>,
    /// The services it uses.
    pub use_services: BTreeMap<String, Vec<String>>,
    /// Its web routes, claimed with the client's.
    pub routes: Vec<ProcRoute>,
}

impl Lifecycle {
    /// The instances `client`'s deployment needs, one per used resource, rendered and checked;
    /// nothing is written.
    pub(super) fn instances_for(
        &self,
        client: &str,
        uses: &BTreeMap<String, UseResource>,
    ) -> Result<Vec<Instance>, LifecycleError> {
        uses.iter()
            .map(|(res, used)| self.instance(res, client, &used.context, None))
            .collect()
    }

    /// Deploys the instance `app` (`resource.<res>.<client>`) again: rendered from `res`'s
    /// `version` (default: newest) release with the parameters of `client`'s current deployment.
    pub(super) fn deploy_instance(
        &self,
        app: &str,
        res: &str,
        client: &str,
        version: Option<&str>,
    ) -> Result<AppRecord, LifecycleError> {
        let record = self.app(client)?;
        let params = record
            .deployed
            .as_ref()
            .and_then(|d| d.use_resources.get(res))
            .ok_or_else(|| {
                LifecycleError::Conflict(format!(
                    "`{app}` is not in use: `{client}`'s deployment does not use resource `{res}` \
                     (deploy `{client}` with it in use_resources)"
                ))
            })?;
        let instance = self.instance(res, client, params, version)?;
        // The client's record is written unchanged, so that the instance is written only while
        // the client still uses it (the same compare-and-set).
        self.update_app_claiming(
            client,
            |r| claims::routes_of(r.deployed.as_ref().map_or(&[][..], |d| &d.procs)),
            |_| Ok(()),
            std::slice::from_ref(&instance),
        )?;
        self.app(app)
    }

    /// Renders resource `res` for `client` with `params` from `res`'s `version` (default:
    /// newest) release, and checks the result as a deploy would.
    fn instance(
        &self,
        res: &str,
        client: &str,
        params: &BTreeMap<String, String>,
        version: Option<&str>,
    ) -> Result<Instance, LifecycleError> {
        let used_by = || format!("resource `{res}` (used by `{client}`)");
        let absent = |e: LifecycleError| match e {
            LifecycleError::NotFound(why) => {
                LifecycleError::NotFound(format!("{}: {why}", used_by()))
            }
            other => other,
        };
        self.app(res).map_err(absent)?;
        let source = match version {
            Some(v) => self.release(res, v).map_err(absent)?,
            None => self.releases(res)?.pop().ok_or_else(|| {
                LifecycleError::NotFound(format!(
                    "{} has no release: run `lain build` in it",
                    used_by()
                ))
            })?,
        };
        let types = plan::proc_types(self)?;
        let parsed =
            crate::spec::parse("lain.yaml", &source.lain_yaml, &types, &self.config.domains);
        if let Some(spec) = parsed.spec
            && spec.apptype != AppType::Resource
        {
            return Err(LifecycleError::Invalid(format!(
                "{}: `{res}` is not a resource (its lain.yaml has no `apptype: resource`)",
                used_by()
            )));
        }
        let rendered = template::render(res, client, params, &source.lain_yaml)
            .map_err(|e| LifecycleError::Invalid(e.to_string()))?;
        let name = template::instance_name(res, client);
        let release = ReleaseRecord {
            app: name.clone(),
            lain_yaml: rendered,
            ..source
        };
        let plan::Rendered {
            mut procs,
            use_services,
            ..
        } = plan::render(self, &release).map_err(|e| match e {
            LifecycleError::Spec(diagnostics) => LifecycleError::Invalid(format!(
                "{} rendered into an invalid lain.yaml:\n  {}",
                used_by(),
                diagnostics
                    .iter()
                    .filter(|d| d.severity == crate::spec::Severity::Error)
                    .map(|d| format!("{}: {}", d.path, d.message))
                    .collect::<Vec<_>>()
                    .join("\n  ")
            )),
            LifecycleError::Invalid(why) => {
                LifecycleError::Invalid(format!("{}: {why}", used_by()))
            }
            other => other,
        })?;
        let named = |e: LifecycleError| match e {
            LifecycleError::Invalid(why) => {
                LifecycleError::Invalid(format!("{}: {why}", used_by()))
            }
            LifecycleError::Conflict(why) => {
                LifecycleError::Conflict(format!("{}: {why}", used_by()))
            }
            other => other,
        };
        self.check_runtime(&procs).map_err(named)?;
        self.check_names(&procs, &use_services, &BTreeMap::new())
            .map_err(named)?;
        self.check_secrets(&name, &mut procs).map_err(named)?;
        if let Some(p) = procs.iter().find(|p| !p.stream_ports.is_empty()) {
            return Err(LifecycleError::Invalid(format!(
                "{}: proc `{}` has stream ports, which resource instances do not claim yet",
                used_by(),
                p.name
            )));
        }
        for proc in &mut procs {
            proc.stamp_plan()
                .map_err(|e| LifecycleError::Internal(anyhow::anyhow!("plan stamp: {e}")))?;
        }
        let routes = claims::routes_of(&procs).map_err(named)?;
        Ok(Instance {
            name,
            release,
            procs,
            use_services,
            routes,
        })
    }

    /// Fails when `record`'s deployment uses a resource whose instance is neither among
    /// `instances` nor stored.
    pub(super) fn check_instances(
        &self,
        record: &AppRecord,
        instances: &[Instance],
    ) -> Result<(), LifecycleError> {
        for res in record.deployed.iter().flat_map(|d| d.use_resources.keys()) {
            let name = template::instance_name(res, &record.name);
            if !instances.iter().any(|i| i.name == name)
                && self.records.store.get(&records::app_key(&name))?.is_none()
            {
                return Err(LifecycleError::Conflict(format!(
                    "this deployment of `{}` uses resource `{res}`, whose instance `{name}` was                      removed; deploy `{}` to instantiate it again",
                    record.name, record.name
                )));
            }
        }
        Ok(())
    }

    /// The writes and conditions that deploy `instances` with their client's record: each
    /// instance's release and app record (created on first use), expected as read.
    pub(super) fn instance_writes(
        &self,
        instances: &[Instance],
    ) -> Result<(Vec<Op>, Vec<Expect>), LifecycleError> {
        let (mut ops, mut expect) = (Vec::new(), Vec::new());
        let now = crate::clock::unix_secs();
        for i in instances {
            let key = records::app_key(&i.name);
            let raw = self.records.store.get(&key)?;
            let mut record = match &raw {
                Some(raw) => serde_json::from_slice(raw)
                    .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?,
                None => AppRecord::new(&i.name, now),
            };
            record.deploy(Deployment {
                release: i.release.version.clone(),
                deployed_at: now,
                procs: i.procs.clone(),
                use_services: i.use_services.clone(),
                use_resources: BTreeMap::new(),
                auto_rollback: true,
            });
            ops.push(put_json(
                &records::release_key(&i.name, &i.release.version),
                &i.release,
            )?);
            ops.push(put_json(&key, &record)?);
            expect.push(Expect { key, value: raw });
        }
        Ok((ops, expect))
    }
}

/// Removes every resource instance whose client no longer uses it (the client is gone,
/// undeployed, or deployed without the resource): its app record and release records; its
/// volumes stay, as an undeploy leaves them. Each removal is conditional on the client's and
/// the instance's records being as read. Returns the instances removed.
pub fn collect(records: &super::state::Records) -> Result<Vec<String>, LifecycleError> {
    let mut removed = Vec::new();
    let _guard = records.lock();
    for (key, raw) in records.store.list(records::APPS)? {
        let Some(app) = key.strip_prefix(records::APPS) else {
            continue;
        };
        let Some((res, client)) = template::instance_of(app) else {
            continue;
        };
        let client_key = records::app_key(client);
        let client_raw = records.store.get(&client_key)?;
        let in_use = match &client_raw {
            Some(raw) => {
                let record: AppRecord = serde_json::from_slice(raw)
                    .map_err(|e| StoreError(format!("{client_key}: corrupt value: {e}")))?;
                record
                    .deployed
                    .is_some_and(|d| d.use_resources.contains_key(res))
            }
            None => false,
        };
        if in_use {
            continue;
        }
        let mut ops = vec![Op::Delete(key.clone())];
        for (release, _) in records
            .store
            .list(&format!("{}{app}/", records::RELEASES))?
        {
            ops.push(Op::Delete(release));
        }
        let mut expect = vec![
            Expect {
                key: key.clone(),
                value: Some(raw),
            },
            Expect {
                key: client_key,
                value: client_raw,
            },
        ];
        // The instance is gone, not undeployed: its route claims go with it (a new instance of
        // the same name claims them again when it deploys).
        let mut claims = super::route_claims::Claims::all(&*records.store)?;
        let released = claims.release_app(app);
        expect.extend(claims.expect());
        ops.extend(claims.ops()?);
        if records.store.apply_if(&expect, ops)?.is_some() {
            tracing::info!(
                instance = app,
                client,
                ?released,
                "resource instance no longer used: removed with its route claims"
            );
            removed.push(app.to_string());
        }
    }
    if !removed.is_empty() {
        records.wake();
    }
    Ok(removed)
}
