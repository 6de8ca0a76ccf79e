//! Where a watch stands, as its event ids say: `REV` (every event of store revision `REV`
//! sent) or `REV.N` (the first `N + 1` events of revision `REV` sent).

use super::events::WatchEvent;
use super::{Frame, event_frame};
use crate::api::error::ApiError;

/// A watch's place in the store's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last revision whose events were (at least partly) sent.
    pub revision: u64,
    /// Of `revision`, how many events were sent; `None`: all of them.
    sent: Option<u64>,
}

impl Position {
    /// After every event of `revision`.
    pub fn at(revision: u64) -> Position {
        Position {
            revision,
            sent: None,
        }
    }

    /// Reads an event id; a clear 400 otherwise.
    pub fn parse(id: &str) -> Result<Position, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "event id `{id}`: expected a store revision `REV` or `REV.N` as the watch sent"
            ))
        };
        let (rev, n) = match id.trim().split_once('.') {
            Some((rev, n)) => (rev, Some(n)),
            None => (id.trim(), None),
        };
        let revision: u64 = rev.parse().map_err(|_| bad())?;
        let sent = match n {
            None => None,
            // `REV.N` names an event of a change, and changes start at revision 1.
            Some(_) if revision == 0 => return Err(bad()),
            Some(n) => Some(n.parse::<u64>().map_err(|_| bad())?.saturating_add(1)),
        };
        Ok(Position { revision, sent })
    }

    /// The revision to watch from: the one before a partly sent revision, so it comes again.
    pub fn watch_from(&self) -> u64 {
        match self.sent {
            Some(_) => self.revision - 1,
            None => self.revision,
        }
    }

    /// Numbers the events of `revision` (all of its events, in order), drops those already
    /// sent and moves the position past the rest.
    pub fn number(&mut self, revision: u64, events: Vec<WatchEvent>) -> Vec<Frame> {
        let skip = match self.sent {
            Some(sent) if revision == self.revision => sent,
            _ => 0,
        };
        let last = events.len().saturating_sub(1);
        let frames: Vec<Frame> = events
            .into_iter()
            .enumerate()
            .skip(usize::try_from(skip).unwrap_or(usize::MAX))
            .map(|(i, mut event)| {
                event.id = Some(if i == last {
                    revision.to_string()
                } else {
                    format!("{revision}.{i}")
                });
                event_frame(event)
            })
            .collect();
        *self = Position::at(revision);
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::watch::{WatchAction, WatchKind};

    fn event(name: &str) -> WatchEvent {
        WatchEvent {
            id: None,
            revision: 7,
            kind: WatchKind::Node,
            name: name.into(),
            action: WatchAction::Put,
            object: None,
        }
    }

    #[test]
    fn ids_resume_inside_a_revision_without_gap_or_duplicate() -> Result<(), String> {
        let mut p = Position::at(6);
        let ids: Vec<_> = p
            .number(7, vec![event("a"), event("b"), event("c")])
            .into_iter()
            .map(|f| f.id)
            .collect();
        assert_eq!(
            ids,
            [Some("7.0".into()), Some("7.1".into()), Some("7".into())]
        );
        assert_eq!(p, Position::at(7));
        // Cut after `7.0`: watch from 6 again and send only `b` and `c` of revision 7.
        let mut p = Position::parse("7.0").map_err(|e| e.message)?;
        assert_eq!(p.watch_from(), 6);
        let names: Vec<_> = p
            .number(7, vec![event("a"), event("b"), event("c")])
            .into_iter()
            .map(|f| f.data["name"].as_str().map(str::to_string))
            .collect();
        assert_eq!(names, [Some("b".into()), Some("c".into())]);
        // Later revisions are sent whole.
        assert_eq!(p.number(9, vec![event("d")]).len(), 1);
        assert_eq!(Position::parse("7").map_err(|e| e.message)?.watch_from(), 7);
        Ok(())
    }

    #[test]
    fn a_bad_id_is_a_clear_refusal() {
        for id in ["", "x", "7.x", "0.1", "-1", "1.2.3"] {
            let err = Position::parse(id)
                .err()
                .map(|e| e.message)
                .unwrap_or_default();
            assert!(err.contains("expected a store revision"), "{id}: {err}");
        }
    }
}
