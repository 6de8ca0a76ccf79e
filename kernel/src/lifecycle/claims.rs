//! Deploys and rollbacks claim their web routes ([`super::route_claims`]) in the same
//! compare-and-set as the app record they write: a deploy that would mount another app's route
//! is refused naming the owner, with nothing written, and two concurrent deploys of one route
//! cannot both win. Stream ports ([`super::stream_claims`]) are claimed in the same
//! compare-and-set.

use super::records::{self, AppRecord, ProcPlan};
use super::resources::Instance;
use super::route_claims::{Claims, MIGRATED, RouteClaim, canonical, listed};
use super::stream_claims;
use super::{Lifecycle, LifecycleError};
use crate::store::{Expect, Op, StoreError, put_json};

/// A web route of a proc, canonical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcRoute {
    /// The proc that mounts it.
    pub proc: String,
    /// Host, lower case.
    pub host: String,
    /// Path, `/` for the whole host.
    pub path: String,
}

/// How often a compare-and-set is tried when other writers keep getting there first.
const ATTEMPTS: usize = 16;

/// The web routes of `procs`. A route a proc-type plugin rendered that is not a mountpoint is
/// refused (plugins are not trusted to name hosts).
pub fn routes_of(procs: &[ProcPlan]) -> Result<Vec<ProcRoute>, LifecycleError> {
    let mut out = Vec::new();
    for proc in procs {
        for r in &proc.plan.routes {
            let (host, path) = canonical(&r.host, &r.path).map_err(|e| {
                LifecycleError::Invalid(format!(
                    "proc `{}` (its proc type's route): {e}",
                    proc.name
                ))
            })?;
            out.push(ProcRoute {
                proc: proc.name.clone(),
                host,
                path,
            });
        }
    }
    Ok(out)
}

impl Lifecycle {
    /// Reads app `app`, claims the routes `routes` names for it, lets `change` modify it and
    /// writes the record and the claims in one compare-and-set (again from the start when
    /// another writer changed either meanwhile); wakes the reconciler. The resource `instances`
    /// its deployment brings are written (and their routes claimed) in the same compare-and-set;
    /// a deployment that uses a resource whose instance is neither written nor stored (a
    /// rollback past a removed instance) is refused.
    pub(super) fn update_app_claiming(
        &self,
        app: &str,
        routes: impl Fn(&AppRecord) -> Result<Vec<ProcRoute>, LifecycleError>,
        mut change: impl FnMut(&mut AppRecord) -> Result<(), LifecycleError>,
        instances: &[Instance],
    ) -> Result<AppRecord, LifecycleError> {
        let _guard = self.records.lock();
        let key = records::app_key(app);
        for _ in 0..ATTEMPTS {
            let raw = self
                .records
                .store
                .get(&key)?
                .ok_or_else(|| LifecycleError::NotFound(format!("no app named `{app}`")))?;
            let mut record: AppRecord = serde_json::from_slice(&raw)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?;
            let wanted = routes(&record)?;
            let theirs = instances
                .iter()
                .flat_map(|i| i.routes.iter().map(move |r| (i.name.as_str(), r)));
            let all: Vec<(&str, &ProcRoute)> =
                wanted.iter().map(|r| (app, r)).chain(theirs).collect();
            let mut claims = Claims::of_hosts(
                &*self.records.store,
                all.iter().map(|(_, r)| r.host.as_str()),
            )?;
            let now = crate::clock::unix_secs();
            let refused: Vec<String> = all
                .iter()
                .filter_map(|(owner, r)| {
                    claims
                        .claim(owner, &r.host, &r.path, &self.config.domains, now)
                        .err()
                        .map(|e| match *owner == app {
                            true => format!("proc `{}`: {e}", r.proc),
                            false => format!("`{owner}`, proc `{}`: {e}", r.proc),
                        })
                })
                .collect();
            if !refused.is_empty() {
                return Err(LifecycleError::Conflict(refused.join("\n")));
            }
            change(&mut record)?;
            let (instance_ops, instance_expect) = self.instance_writes(instances)?;
            self.check_instances(&record, instances)?;
            let streams = stream_claims::claim(&*self.records.store, &record, |other, port| {
                let Some(raw) = self.records.store.get(&records::app_key(other))? else {
                    return Ok(false);
                };
                let other: AppRecord = serde_json::from_slice(&raw)
                    .map_err(|e| StoreError(format!("app `{other}`: corrupt value: {e}")))?;
                Ok(stream_claims::declared(&other)
                    .iter()
                    .any(|(p, _)| *p == port))
            })?
            .map_err(|refused| LifecycleError::Conflict(refused.join("\n")))?;
            let mut ops = claims.ops()?;
            ops.extend(streams.ops);
            ops.push(put_json(&key, &record)?);
            ops.extend(instance_ops);
            let mut expect = claims.expect();
            expect.extend(streams.expect);
            expect.extend(instance_expect);
            expect.push(Expect {
                key: key.clone(),
                value: Some(raw),
            });
            if self.records.store.apply_if(&expect, ops)?.is_some() {
                self.records.wake();
                return Ok(record);
            }
        }
        Err(LifecycleError::Conflict(format!(
            "app `{app}` or the claims on its routes kept changing; try again"
        )))
    }

    /// Once per store: claims the routes of the deployments made before route claims existed,
    /// oldest app first, under the same rules as a deploy. A route that another app owns (by
    /// default domain or an earlier app's claim) is left unclaimed, so the router does not serve
    /// it for the later app; each one is logged with both apps.
    pub fn claim_existing_routes(&self) -> Result<(), LifecycleError> {
        for _ in 0..ATTEMPTS {
            let marker = self.records.store.get(MIGRATED)?;
            if marker.is_some() {
                return Ok(());
            }
            let mut apps = self.apps()?;
            apps.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
            let mut claims = Claims::all(&*self.records.store)?;
            let mut hosts = Vec::new();
            for app in &apps {
                for proc in app.deployed.iter().flat_map(|d| &d.procs) {
                    for r in &proc.plan.routes {
                        if let Ok((host, _)) = canonical(&r.host, &r.path) {
                            hosts.push(host);
                        }
                    }
                }
            }
            // Hosts nobody claims yet are read too, so that their absence is a condition.
            let unread = Claims::of_hosts(&*self.records.store, hosts.iter().map(String::as_str))?;
            claims.merge_missing(unread);
            let now = crate::clock::unix_secs();
            for app in &apps {
                for proc in app.deployed.iter().flat_map(|d| &d.procs) {
                    for r in &proc.plan.routes {
                        let claimed = canonical(&r.host, &r.path).and_then(|(host, path)| {
                            claims.claim(&app.name, &host, &path, &self.config.domains, now)
                        });
                        if let Err(e) = claimed {
                            tracing::warn!(app = %app.name, proc = %proc.name, "route not claimed, so not served: {e}");
                        }
                    }
                }
            }
            let mut ops = claims.ops()?;
            ops.push(Op::Put(MIGRATED.into(), b"1".to_vec()));
            let mut expect = claims.expect();
            expect.push(Expect {
                key: MIGRATED.into(),
                value: None,
            });
            if self.records.store.apply_if(&expect, ops)?.is_some() {
                return Ok(());
            }
        }
        Err(LifecycleError::Conflict(
            "the route claims kept changing while claiming existing routes".into(),
        ))
    }
}

/// What an admin's assignment of a mountpoint did.
#[derive(Clone, Debug)]
pub struct Assignment {
    /// The new claim.
    pub claim: RouteClaim,
    /// Claims of other apps it replaced.
    pub replaced: Vec<RouteClaim>,
}

impl Lifecycle {
    /// Every route claim.
    pub fn route_claims(&self) -> Result<Vec<RouteClaim>, LifecycleError> {
        Ok(Claims::all(self.store())?.list())
    }

    /// Gives the mountpoint `host` + `path` (canonical) to app `app` for the admin `by`: every
    /// overlapping claim (of any app, default domains included) is replaced; wakes the
    /// reconciler, so the router follows.
    pub fn assign_route(
        &self,
        app: &str,
        host: &str,
        path: &str,
        by: &str,
    ) -> Result<Assignment, LifecycleError> {
        self.app(app)?;
        self.change_host_claims(host, |claims| {
            let replaced = claims.assign(app, host, path, by, crate::clock::unix_secs());
            let claim = claims
                .list()
                .into_iter()
                .find(|c| c.host == host && c.path == path)
                .ok_or_else(|| anyhow::anyhow!("the assigned claim is missing"))?;
            Ok(Assignment { claim, replaced })
        })
    }

    /// Releases the claim of exactly `host` + `path` (canonical; `mountpoint` as the caller
    /// wrote it, for the error): nobody holds the mountpoint until a deploy claims it. Wakes the
    /// reconciler, so the router stops serving it.
    pub fn release_route(
        &self,
        mountpoint: &str,
        host: &str,
        path: &str,
    ) -> Result<RouteClaim, LifecycleError> {
        self.change_host_claims(host, |claims| {
            let held: Vec<String> = claims.list().into_iter().map(|c| c.mountpoint).collect();
            let claim = claims.release(host, path).ok_or_else(|| {
                LifecycleError::NotFound(format!(
                    "no claim of exactly `{mountpoint}`; claims on `{host}`: {}",
                    if held.is_empty() {
                        "none".to_string()
                    } else {
                        held.join(", ")
                    }
                ))
            })?;
            Ok(listed(host, path, &claim))
        })
    }

    /// Applies `change` to the claims of `host` and writes them if nobody changed them
    /// meanwhile (else reads and changes again, [`ATTEMPTS`] times); then wakes the reconciler.
    /// An error of `change` writes nothing.
    fn change_host_claims<T>(
        &self,
        host: &str,
        mut change: impl FnMut(&mut Claims) -> Result<T, LifecycleError>,
    ) -> Result<T, LifecycleError> {
        for _ in 0..ATTEMPTS {
            let mut claims = Claims::of_hosts(self.store(), [host])?;
            let answer = change(&mut claims)?;
            if self
                .store()
                .apply_if(&claims.expect(), claims.ops()?)?
                .is_some()
            {
                self.wake();
                return Ok(answer);
            }
        }
        Err(busy())
    }
}

/// An admin's change that lost every compare-and-set to deploys changing the host's claims.
fn busy() -> LifecycleError {
    LifecycleError::Conflict("the host's claims kept changing; try again".into())
}
