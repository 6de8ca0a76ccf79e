//! Audit records the guard cannot complete alone. A build names its app inside its context, not
//! in its route, and answers 200 as soon as its event stream starts, so neither the route nor the
//! status says what it was about or how it ended. The guard puts an [`AuditTrail`] in the
//! request's extensions; the handler names the app and, for work that outlives the response,
//! defers the outcome and reports it when the work ends. Whoever of the guard and the handler
//! comes last writes the final record, exactly once.

use crate::auth::Access;
use crate::auth::audit::AuditRecord;
use crate::store::Store;
use parking_lot::Mutex;
use std::sync::Arc;

/// How an audited call ended, when its status does not say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It did what was asked.
    Ok,
    /// The caller was refused (after the response started).
    Denied(String),
    /// It failed.
    Failed(String),
}

/// The handler's side of one audited call's record (see the module docs).
#[derive(Clone)]
pub struct AuditTrail {
    state: Arc<Mutex<State>>,
    access: Arc<Access>,
    store: Arc<dyn Store>,
}

#[derive(Default)]
struct State {
    app: Option<String>,
    deferred: bool,
    outcome: Option<Outcome>,
    /// The record (and the key of its `pending` version), once the guard has handed it over.
    record: Option<(AuditRecord, Option<String>)>,
}

/// What the guard does with its record once the response has started.
pub(super) enum Handover {
    /// Write it now (the outcome is known).
    Write(AuditRecord),
    /// The handler writes it when its work ends.
    Deferred,
}

impl AuditTrail {
    /// A trail writing to `access`'s audit log in `store`.
    pub(super) fn new(access: Arc<Access>, store: Arc<dyn Store>) -> AuditTrail {
        AuditTrail {
            state: Arc::default(),
            access,
            store,
        }
    }

    /// Names the app the call is about (for routes without `{app}`).
    pub fn set_app(&self, app: &str) {
        self.state.lock().app = Some(app.to_string());
    }

    /// The outcome will be reported by [`AuditTrail::finish`], after the response has started.
    pub fn defer(&self) {
        self.state.lock().deferred = true;
    }

    /// Reports the outcome of a deferred call, writing the record if the guard has handed it
    /// over (it blocks on the store: call it from blocking work).
    pub fn finish(&self, outcome: Outcome) {
        let handed = {
            let mut state = self.state.lock();
            state.outcome = Some(outcome.clone());
            let app = state.app.clone();
            state.record.take().map(|(mut record, key)| {
                if record.app.is_none() {
                    record.app = app;
                }
                (record, key)
            })
        };
        if let Some((mut record, key)) = handed {
            apply(&mut record, &outcome);
            self.write(&record, key);
        }
    }

    /// The guard's side, once the response has started: fills in the app, and either returns the
    /// record to write now or keeps it for [`AuditTrail::finish`].
    pub(super) fn hand_over(&self, mut record: AuditRecord, key: Option<String>) -> Handover {
        let mut state = self.state.lock();
        if record.app.is_none() {
            record.app = state.app.clone();
        }
        match (&state.outcome, state.deferred) {
            (Some(outcome), _) => {
                apply(&mut record, outcome);
                Handover::Write(record)
            }
            (None, true) => {
                state.record = Some((record, key));
                Handover::Deferred
            }
            (None, false) => Handover::Write(record),
        }
    }

    fn write(&self, record: &AuditRecord, key: Option<String>) {
        let written = match key {
            Some(key) => self.access.audit.update(&*self.store, &key, record),
            None => self.access.audit.append(&*self.store, record).map(|_| ()),
        };
        if let Err(e) = written {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

/// The outcome over what the status said (the status stays what was answered).
fn apply(record: &mut AuditRecord, outcome: &Outcome) {
    let (result, reason) = match outcome {
        Outcome::Ok => ("ok", None),
        Outcome::Denied(why) => ("denied", Some(why.clone())),
        Outcome::Failed(why) => ("failed", Some(why.clone())),
    };
    record.result = result.into();
    record.reason = reason;
}
