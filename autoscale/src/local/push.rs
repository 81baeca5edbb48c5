//! The local scaler as a client of the gateway's push scaler: the same `StreamIsActive` call
//! KEDA makes for an `external-push` trigger. Reconnects with a short backoff; while it is
//! down, activation falls back to polling, as in a cluster.

use std::collections::HashMap;

use backon::BackoffBuilder as _;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::externalscaler::ScaledObjectRef;
use crate::externalscaler::external_scaler_client::ExternalScalerClient;

/// Forwards every `active` value the gateway pushes for `function` until `shutdown`.
pub async fn follow(
    address: String,
    function: String,
    tx: mpsc::Sender<bool>,
    shutdown: CancellationToken,
) {
    // Reconnects as every Surge process does: doubling from 200 ms to 5 s with jitter, and
    // from the start again once a stream was open.
    let policy = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let mut delays = policy.build();
    loop {
        let mut opened = false;
        let stream = async {
            let connect = ExternalScalerClient::connect(address.clone());
            let mut client = tokio::time::timeout(Duration::from_secs(5), connect).await??;
            let request = ScaledObjectRef {
                name: format!("surge-{function}"),
                namespace: "local".into(),
                scaler_metadata: HashMap::from([("function".to_owned(), function.clone())]),
            };
            let mut stream = client.stream_is_active(request).await?.into_inner();
            opened = true;
            while let Some(message) = stream.message().await? {
                if tx.send(message.result).await.is_err() {
                    break;
                }
            }
            Ok::<_, anyhow::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = stream => if let Err(e) = result {
                tracing::debug!(%function, error = %e, "push stream down; polling only until it is back");
            },
        }
        // Without the stream, its last word must not keep the function active: polling alone
        // decides until it is back.
        if tx.send(false).await.is_err() {
            return;
        }
        if opened {
            delays = policy.build();
        }
        let delay = delays.next().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
