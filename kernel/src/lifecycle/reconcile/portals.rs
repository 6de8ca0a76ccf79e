//! Portal networking: which client apps a portal serves, and the network changes that put each
//! portal instance on exactly its clients' networks.

use super::actions::Action;
use super::desired::Desired;
use crate::lifecycle::records::AppRecord;
use crate::runtime::Observed;
use std::collections::BTreeMap;

/// A client app a portal serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The client app (whose network the portal joins).
    pub client: String,
    /// The name the client reaches the portal by (its service name).
    pub alias: String,
}

/// Fills each portal's grants: every deployed app whose `use_services` names the portal's
/// service (and that its `allow_clients` admits) gets the portal on its network, reachable by the
/// service name (LAIN reference §services, §portals).
pub fn grant(apps: &[AppRecord], desired: &mut BTreeMap<String, Desired>) {
    for client in apps {
        let Some(deployed) = &client.deployed else {
            continue;
        };
        for (service_app, names) in &deployed.use_services {
            for d in desired.values_mut().filter(|d| d.app == *service_app) {
                let Some(portal) = &d.plan.plan.portal else {
                    continue;
                };
                let allowed = glob::Pattern::new(&portal.allow_clients)
                    .is_ok_and(|p| p.matches(&client.name));
                if allowed && names.contains(&portal.service_name) {
                    d.grants.push(Grant {
                        client: client.name.clone(),
                        alias: portal.service_name.clone(),
                    });
                }
            }
        }
    }
}

/// Connects a portal instance to the networks of its clients and disconnects it from former
/// clients'.
pub fn connect_clients(d: &Desired, o: &Observed, actions: &mut Vec<Action>) {
    for g in &d.grants {
        if !o.networks.contains(&g.client) {
            actions.push(Action::Connect {
                name: o.name.clone(),
                client: g.client.clone(),
                alias: g.alias.clone(),
            });
        }
    }
    for network in &o.networks {
        if *network != d.app && !d.grants.iter().any(|g| g.client == *network) {
            actions.push(Action::Disconnect {
                name: o.name.clone(),
                client: network.clone(),
            });
        }
    }
}
