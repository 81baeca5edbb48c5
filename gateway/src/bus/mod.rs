//! The gateway's side of the broker: one supervised connection that declares the topology,
//! publishes jobs with confirms, and consumes this replica's reply queue, handing each
//! completion to the caller waiting for it.

mod link;
mod request;
mod waiters;

pub use link::{Bus, PublishJobError};
pub use request::{JobRequest, RequestError, job_message};
pub use waiters::{Completion, Waiter, WaitersFull};
