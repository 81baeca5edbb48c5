//! `echo`: returns its input unchanged. The benchmark fixture: everything in a round trip
//! except the handler's own work.

use surge_runtime::{Function, HandlerError, JobContext};

pub struct Echo;

impl Function for Echo {
    const NAME: &'static str = "echo";
    type Input = serde_json::Value;
    type Output = serde_json::Value;

    async fn handle(
        &self,
        input: serde_json::Value,
        _ctx: &mut JobContext<'_>,
    ) -> Result<serde_json::Value, HandlerError> {
        Ok(input)
    }
}
