//! The anomalies topic: every event state change (opened, closed) as JSON, keyed by host, with an
//! event id header that stays the same however often the change is delivered, so consumers can
//! deduplicate. Delivery is retried with backoff while the broker is unreachable (consumption
//! waits, `/health` says why); it happens before the store's transaction, so a crash in between
//! delivers again rather than never (at-least-once on the topic, deduplicated by id).

use std::time::Duration;

use anomaly_core::Anomaly;
use anomaly_stream::kafka::{AsyncProducer, DeliveryFuture};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;

use crate::telemetry::Health;

/// Header naming the event: `host/window start (ms)/model version`, the store's unique key.
pub const EVENT_ID_HEADER: &str = "anomaly.event.id";
/// Header saying which change the message reports: `opened` or `closed`.
pub const EVENT_STATE_HEADER: &str = "anomaly.event.state";

/// The `/health` component a delivery problem on the anomalies topic is reported under.
const COMPONENT: &str = "anomalies topic";
/// Backoff between delivery attempts: from the first to the longest.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// Where anomaly events go besides the store.
pub struct EventTopic {
    /// An idempotent producer (acks=all).
    pub producer: AsyncProducer,
    /// The topic, keyed by host, values JSON [`Anomaly`].
    pub topic: String,
}

/// The id of `anomaly`'s event: the same for its opening and its closing, and for every
/// redelivery.
pub fn event_id(anomaly: &Anomaly) -> String {
    format!(
        "{}/{}/{}",
        anomaly.entity, anomaly.window_start_ms, anomaly.model_version
    )
}

impl EventTopic {
    /// Publishes `events`, retrying until the broker has them all.
    pub async fn publish(&self, events: &[Anomaly], health: &Health) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.deliver(events).await {
                Ok(()) => {
                    health.recovered(COMPONENT);
                    return;
                }
                Err(problem) => {
                    // Redelivery may repeat an event on the topic; consumers deduplicate on the
                    // event id and state headers.
                    tracing::warn!(error = %problem, retry_in_ms = backoff.as_millis() as u64, "cannot publish anomaly events; consumption waits");
                    health.problem(COMPONENT, problem);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(LONGEST_BACKOFF);
                }
            }
        }
    }

    /// Publishes `events` once: every event is enqueued before any delivery is awaited, so a
    /// batch with many events costs one broker round trip, not one per event.
    async fn deliver(&self, events: &[Anomaly]) -> Result<(), String> {
        let mut deliveries = Vec::with_capacity(events.len());
        for anomaly in events {
            let payload = serde_json::to_vec(anomaly).map_err(|e| e.to_string())?;
            let id = event_id(anomaly);
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: EVENT_ID_HEADER,
                    value: Some(id.as_str()),
                })
                .insert(Header {
                    key: EVENT_STATE_HEADER,
                    value: Some(if anomaly.closed { "closed" } else { "opened" }),
                });
            let record = FutureRecord::to(&self.topic)
                .key(&anomaly.entity)
                .payload(&payload)
                .headers(headers);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push(delivery),
                // The producer's queue is full: wait for what is in flight, then send this one
                // the patient way.
                Err((_, record)) => {
                    await_deliveries(std::mem::take(&mut deliveries)).await?;
                    self.producer
                        .send(record, Duration::from_secs(30))
                        .await
                        .map_err(|e| format!("cannot publish an anomaly: {e}"))?;
                }
            }
        }
        await_deliveries(deliveries).await
    }
}

/// Waits for every delivery report; the first failure is the error.
async fn await_deliveries(deliveries: Vec<DeliveryFuture>) -> Result<(), String> {
    for delivery in deliveries {
        delivery
            .await
            .map_err(|_| "the producer dropped an anomaly's delivery report".to_string())?
            .map_err(|(e, _)| format!("cannot publish an anomaly: {e}"))?;
    }
    Ok(())
}
