//! The gRPC service KEDA calls. The trigger's metadata names the function (`function`) and may
//! set the target jobs per replica (`targetSize`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::Stream;
use surge_contract::job::FunctionName;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::activity::Activity;
use super::proto::external_scaler_server::ExternalScaler;
use super::proto::{
    GetMetricSpecResponse, GetMetricsRequest, GetMetricsResponse, IsActiveResponse, MetricSpec,
    MetricValue, ScaledObjectRef,
};

pub struct ScalerService {
    activity: Arc<Activity>,
    /// Bounds the open `StreamIsActive` streams (each holds a task and a watch).
    streams: Arc<Semaphore>,
    default_target: f64,
    shutdown: CancellationToken,
}

impl ScalerService {
    pub fn new(
        activity: Arc<Activity>,
        max_streams: usize,
        default_target: f64,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            activity,
            streams: Arc::new(Semaphore::new(max_streams)),
            default_target,
            shutdown,
        }
    }

    fn function(&self, object: Option<&ScaledObjectRef>) -> Result<FunctionName, Status> {
        let name = object
            .and_then(|o| o.scaler_metadata.get("function"))
            .ok_or_else(|| {
                Status::invalid_argument(
                    "the trigger's metadata must name the function: `function: <name>`",
                )
            })?;
        FunctionName::parse(name)
            .ok()
            .filter(|f| self.activity.current(f).is_some())
            .ok_or_else(|| {
                Status::not_found(format!("this gateway serves no function named {name:?}"))
            })
    }

    fn target(&self, object: &ScaledObjectRef) -> Result<f64, Status> {
        match object.scaler_metadata.get("targetSize") {
            None => Ok(self.default_target),
            Some(t) => t.parse::<f64>().ok().filter(|t| *t > 0.0).ok_or_else(|| {
                Status::invalid_argument(format!("targetSize must be a positive number, got {t:?}"))
            }),
        }
    }
}

fn metric_name(function: &FunctionName) -> String {
    format!("surge-{function}")
}

type ActiveStream = Pin<Box<dyn Stream<Item = Result<IsActiveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ExternalScaler for ScalerService {
    async fn is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<IsActiveResponse>, Status> {
        let function = self.function(Some(request.get_ref()))?;
        let activity = self.activity.current(&function).unwrap_or_default();
        Ok(Response::new(IsActiveResponse {
            result: activity.is_active(self.activity.hold(), Instant::now()),
        }))
    }

    type StreamIsActiveStream = ActiveStream;

    /// Sends the current state at once, then every change: `true` the moment a job is
    /// published for an idle function, `false` once nothing is queued or in flight.
    async fn stream_is_active(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<Self::StreamIsActiveStream>, Status> {
        let function = self.function(Some(request.get_ref()))?;
        let permit = Arc::clone(&self.streams)
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("too many StreamIsActive streams are open"))?;
        let rx = self
            .activity
            .subscribe(&function)
            .ok_or_else(|| Status::not_found("unknown function"))?;
        let hold = self.activity.hold();
        let shutdown = self.shutdown.clone();
        let state = (rx, None::<bool>, permit, shutdown);
        let stream = futures_util::stream::unfold(
            state,
            move |(mut rx, mut last, permit, shutdown)| async move {
                loop {
                    let active = rx.borrow_and_update().is_active(hold, Instant::now());
                    if last != Some(active) {
                        last = Some(active);
                        return Some((
                            Ok(IsActiveResponse { result: active }),
                            (rx, last, permit, shutdown),
                        ));
                    }
                    tokio::select! {
                        changed = rx.changed() => if changed.is_err() { return None },
                        _ = shutdown.cancelled() => return None,
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_metric_spec(
        &self,
        request: Request<ScaledObjectRef>,
    ) -> Result<Response<GetMetricSpecResponse>, Status> {
        let function = self.function(Some(request.get_ref()))?;
        let target = self.target(request.get_ref())?;
        Ok(Response::new(GetMetricSpecResponse {
            metric_specs: vec![MetricSpec {
                metric_name: metric_name(&function),
                target_size: target.ceil() as i64,
                target_size_float: target,
            }],
        }))
    }

    /// Queued plus in-flight jobs of the function.
    async fn get_metrics(
        &self,
        request: Request<GetMetricsRequest>,
    ) -> Result<Response<GetMetricsResponse>, Status> {
        let function = self.function(request.get_ref().scaled_object_ref.as_ref())?;
        let activity = self.activity.current(&function).unwrap_or_default();
        let value = activity.metric(self.activity.hold(), Instant::now());
        let name = match request.get_ref().metric_name.as_str() {
            "" => metric_name(&function),
            asked => asked.to_owned(),
        };
        Ok(Response::new(GetMetricsResponse {
            metric_values: vec![MetricValue {
                metric_name: name,
                metric_value: i64::try_from(value).unwrap_or(i64::MAX),
                metric_value_float: value as f64,
            }],
        }))
    }
}
