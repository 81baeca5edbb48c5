//! What KEDA's rabbitmq trigger counts, by protocol (kedacore/keda pkg/scalers/
//! rabbitmq_scaler.go, `getQueueStatus`): over http the management API's `messages` (ready
//! plus unacknowledged), or `messages_ready` with `excludeUnacknowledged`; over amqp a passive
//! queue declare, whose message count is ready messages only. A function whose jobs are all
//! checked out then looks idle.

use crate::manifest::{BrokerHost, FunctionScaling};

/// The protocol KEDA reads the queue with, and so what it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueProtocol {
    /// The management API (`http`, `https`).
    Http {
        /// `excludeUnacknowledged: "true"`: ready messages only.
        exclude_unacknowledged: bool,
    },
    /// AMQP (`amqp`, `amqps`): ready messages only.
    Amqp,
}

impl QueueProtocol {
    /// Whether the count includes unacknowledged (in-flight) messages.
    pub fn counts_in_flight(self) -> bool {
        self == Self::Http {
            exclude_unacknowledged: false,
        }
    }
}

/// The protocol KEDA uses for `spec`'s rabbitmq trigger (`rabbitMQMetadata.Validate`):
/// `protocol` when it says amqp or http; for `auto` (the default) the scheme of the metadata's
/// `host`. When the host is given elsewhere (a TriggerAuthentication, `hostFromEnv`) its scheme
/// cannot be known from the manifests and http is assumed: Surge's TriggerAuthentication points
/// KEDA at the management API (`surge check` warns about `auto`).
pub fn queue_protocol(spec: &FunctionScaling) -> QueueProtocol {
    let http = QueueProtocol::Http {
        exclude_unacknowledged: spec.exclude_unacknowledged,
    };
    match spec.protocol.as_deref() {
        Some("amqp") => QueueProtocol::Amqp,
        Some("http") => http,
        _ => match &spec.host {
            Some(BrokerHost::Url(url)) if is_amqp_url(url) => QueueProtocol::Amqp,
            _ => http,
        },
    }
}

fn is_amqp_url(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("amqp") || scheme.eq_ignore_ascii_case("amqps")
}
