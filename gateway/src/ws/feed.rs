//! What this replica's websocket connections are shown of the completions routed here: the
//! owner's own connections get a completion whole; other entities' tenant-wide watchers (an
//! admin's console) get a success without its result (as `/admin/jobs` lists it) and a
//! failure with its problem; subscribers of `settings` get a `dev.surge.settings.changed`
//! event for every change, whoever made it.

use std::sync::Arc;

use surge_contract::completion::Completion;
use surge_contract::server_settings::{self, Changed};
use uuid::Uuid;

use super::hub::{Hub, Push};
use crate::bus::{EventListener, RoutedEvent};

/// The bus's listener for websockets.
#[derive(Debug)]
pub struct Feed {
    hub: Arc<Hub>,
}

impl Feed {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }

    /// A settings write's completion: shown to every subscriber of `settings`.
    fn settings_change(&self, event: &RoutedEvent<'_>) {
        if !event.completed() || !self.hub.wants_function(server_settings::FUNCTION) {
            return;
        }
        let json = event
            .completion()
            .map_err(|e| e.to_string())
            .and_then(|completion| {
                let changed = Changed::of(&completion)?
                    .ok_or_else(|| "a completed write without a change".to_owned())?;
                changed.to_event(completion.job_id)
            })
            .and_then(|event| serde_json::to_string(&event).map_err(|e| e.to_string()));
        match json {
            Ok(json) => {
                self.hub
                    .broadcast(server_settings::FUNCTION, Arc::from(json));
            }
            Err(e) => tracing::warn!(error = %e, "a settings change could not be pushed"),
        }
    }
}

impl EventListener for Feed {
    fn on_event(&self, event: &RoutedEvent<'_>) {
        if event.function == server_settings::FUNCTION {
            // The writer's own connections also get the job's completion below.
            self.settings_change(event);
        }
        // `-`: a job no tenant owns, seen only by operators watching it; the nil id is no
        // entity's, so it reaches no entity's own connections.
        let entity = event.entity.parse().unwrap_or(Uuid::nil());
        let job = event.job.map(|j| j.0);
        let interest = self.hub.interest(event.tenant, entity, job, event.function);
        if !interest.any() {
            return;
        }
        let completion = match event.completion() {
            Ok(completion) => completion,
            Err(e) => {
                tracing::warn!(error = %e, "an undecodable completion was not pushed");
                return;
            }
        };
        let Some(json) = render(&completion) else {
            return;
        };
        let for_watchers = if interest.others && event.completed() {
            let Some(bare) = render(&completion.redacted()) else {
                return;
            };
            bare
        } else {
            json.clone()
        };
        self.hub.dispatch(&Push {
            tenant: event.tenant.to_owned(),
            entity,
            function: event.function.to_owned(),
            job,
            json,
            for_watchers,
        });
    }
}

fn render(completion: &Completion) -> Option<Arc<str>> {
    match completion.to_structured_json() {
        Ok(json) => Some(Arc::from(json)),
        Err(e) => {
            tracing::warn!(error = %e, "a completion could not be rendered as JSON");
            None
        }
    }
}
