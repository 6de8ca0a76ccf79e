//! Volume backups (`lain backup`): list, run, restore, delete. Rights as for secrets: an
//! app's maintainers and cluster admins; restoring to a path on the kernel's host (`to`) is for
//! cluster admins only. Every change is audited.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::auth::Caller;
use crate::backup::{BackupRecord, Kind, Restored, RunRequest, Target, Trigger};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;

/// Which backups to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this proc's.
    pub proc: Option<String>,
}

/// A backup to take now.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunBackup {
    /// Only this volume (its path in the instance); default every volume of the proc (LAIN's
    /// implicit `/lain/logs` only when it has a backup policy).
    pub volume: Option<String>,
    /// Only this instance; default every instance.
    pub instance: Option<u32>,
    /// `full` (default) or `incremental`.
    pub kind: Option<Kind>,
}

/// Where to restore a backup.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RestoreBackup {
    /// In place into this instance's volume (default: the backup's own instance).
    pub instance: Option<u32>,
    /// Beside, into this new directory on the kernel's host (cluster admins only).
    pub to: Option<String>,
}

/// The backups of an app (of one proc with `?proc=`), oldest first; failed ones included.
#[utoipa::path(get, path = "/api/v1/apps/{app}/backups", tag = "backups",
    params(("app" = String, Path, description = "App name"), ListQuery),
    responses((status = 200, body = Vec<BackupRecord>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<BackupRecord>>, ApiError> {
    let Query(q) = q?;
    blocking(move || Ok(Json(state.backups.list(&app, q.proc.as_deref())?))).await
}

/// Takes a backup of the proc's volumes now (one per volume and instance, one after the
/// other) and answers with their records once they ended; a failed backup is a record with
/// `outcome: failed`.
#[utoipa::path(post, path = "/api/v1/apps/{app}/procs/{proc}/backups", tag = "backups",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = RunBackup,
    responses((status = 200, body = Vec<BackupRecord>), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "A backup of that volume runs", body = ErrorBody)))]
pub async fn run(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    body: Result<Json<RunBackup>, JsonRejection>,
) -> Result<Json<Vec<BackupRecord>>, ApiError> {
    let body = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => RunBackup::default(),
        Err(e) => return Err(e.into()),
    };
    let backups = state.backups.clone();
    let (a, p) = (app.clone(), proc.clone());
    let declared = blocking(move || Ok(backups.declared(&a)?)).await?;
    let d = declared.into_iter().find(|d| d.proc == p).ok_or_else(|| {
        ApiError::not_found(format!("proc `{proc}` of app `{app}` has no volumes"))
    })?;
    let volumes: Vec<String> = match &body.volume {
        Some(v) if d.volumes.iter().any(|x| &x.path == v) => vec![v.clone()],
        Some(v) => {
            return Err(ApiError::not_found(format!(
                "proc `{proc}` of app `{app}` has no volume {v}"
            )));
        }
        // Every volume the proc declares; LAIN's implicit `/lain/logs` only with a policy.
        None => d
            .volumes
            .iter()
            .filter(|v| {
                v.path != "/lain/logs" || v.backup_full.is_some() || v.backup_increment.is_some()
            })
            .map(|v| v.path.clone())
            .collect(),
    };
    let instances: Vec<u32> = match body.instance {
        Some(n) => vec![n],
        None => (1..=d.instances).collect(),
    };
    let mut out = Vec::new();
    for instance in instances {
        for volume in &volumes {
            let req = RunRequest {
                target: Target {
                    app: app.clone(),
                    proc: proc.clone(),
                    instance,
                    volume: volume.clone(),
                },
                kind: body.kind.unwrap_or(Kind::Full),
                trigger: Trigger::Manual,
                scheduled_at: None,
            };
            out.push(state.backups.run(req).await?);
        }
    }
    Ok(Json(out))
}

/// Restores a succeeded backup, verified against restic's hashes: in place (the instance is
/// stopped, its volume replaced, and started again) or beside, into `to`. A restore in place
/// holds its instance from the reconciler, which runs on the leading kernel: on etcd, another
/// kernel refuses it (409, naming the leader) and changes nothing.
#[utoipa::path(post, path = "/api/v1/apps/{app}/backups/{id}/restore", tag = "backups",
    params(("app" = String, Path, description = "App name"), ("id" = u64, Path, description = "Backup id")),
    request_body = RestoreBackup,
    responses((status = 200, body = Restored), (status = 400, body = ErrorBody),
        (status = 403, description = "`to` needs a cluster admin", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "Not restorable now, or in place on a kernel that does not lead", body = ErrorBody)))]
pub async fn restore(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    path: Result<Path<(String, u64)>, PathRejection>,
    body: Result<Json<RestoreBackup>, JsonRejection>,
) -> Result<Json<Restored>, ApiError> {
    let body = match body {
        Ok(Json(b)) => b,
        Err(JsonRejection::MissingJsonContentType(_)) => RestoreBackup::default(),
        Err(e) => return Err(e.into()),
    };
    let Path((app, id)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let to = body.to.map(std::path::PathBuf::from);
    let status = state.cluster.status(0);
    if to.is_none() && status.store == "etcd" && !state.cluster.is_leader() {
        let leader = status
            .leader
            .map_or("no kernel leads at the moment".into(), |id| {
                format!("kernel {id} leads")
            });
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not-the-leader",
            format!(
                "a restore in place holds its instance from the reconciler, which runs on the \
                 leading kernel, and this kernel ({}) does not lead ({leader}): send the request \
                 to the leader (`lain status` names it), or restore beside with `to`",
                status.kernel
            ),
        ));
    }
    Ok(Json(
        state
            .backups
            .restore(&app, id, body.instance, to, caller.admin)
            .await?,
    ))
}

/// Deletes a backup: its snapshot (and the data only it held) and its record.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/backups/{id}", tag = "backups",
    params(("app" = String, Path, description = "App name"), ("id" = u64, Path, description = "Backup id")),
    responses((status = 200, body = BackupRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "It is still running", body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<(String, u64)>, PathRejection>,
) -> Result<Json<BackupRecord>, ApiError> {
    let Path((app, id)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(state.backups.delete(&app, id).await?))
}
