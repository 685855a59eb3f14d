//! [`AsyncProducer`]: an asynchronous Kafka producer whose delivery reports are served by a thread
//! that sleeps until librdkafka has one.
//!
//! rdkafka's `FutureProducer` serves them from a thread that polls in 100 ms slices, and each
//! slice ends in about a millisecond of non-blocking polls (the remaining time is rounded down to
//! whole milliseconds, so the last one is 0): about 1 % of a core per producer, idle or not. That
//! was all of the collector's CPU at 1 Hz and a tenth of the detector's under load. Here
//! librdkafka writes a byte to a socket when its queue of reports stops being empty, and the
//! thread blocks on reading it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use futures::channel::oneshot;
use rdkafka::client::{ClientContext, DefaultClientContext, OAuthToken};
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, NoCustomPartitioner, Producer as _,
    ProducerContext,
};
use rdkafka::statistics::Statistics;
use rdkafka::util::Timeout;

pub use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};

use super::queue::{Queue, Wakeup};

/// What a sent record's delivery resolves to: its report, or `Canceled` if the producer was
/// dropped first (as rdkafka's `DeliveryFuture`).
pub type DeliveryFuture = oneshot::Receiver<OwnedDeliveryResult>;

/// An asynchronous Kafka producer: [`send_result`](Self::send_result) queues a record and returns
/// a future of its delivery report. Clones share the producer; the last one dropped stops its
/// thread, then purges and flushes as rdkafka's producers do.
///
/// Created from a `ClientConfig` with [`AsyncProducer::from_config`] (or `ClientConfig::create`).
pub struct AsyncProducer<C: ClientContext + 'static = DefaultClientContext> {
    inner: Arc<Inner<C>>,
}

impl<C: ClientContext + 'static> Clone for AsyncProducer<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<C: ClientContext + 'static> {
    producer: Arc<BaseProducer<Reports<C>>>,
    stop: Arc<AtomicBool>,
    /// The socket librdkafka writes to, which must outlive its writes; also wakes the thread to
    /// stop.
    wakeup: Arc<Wakeup>,
    thread: Option<JoinHandle<()>>,
}

impl<C: ClientContext + 'static> AsyncProducer<C> {
    /// Creates the producer (no connection is made yet) with `context` for logs and errors.
    pub fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        let producer = Arc::new(BaseProducer::from_config_and_context(
            config,
            Reports { wrapped: context },
        )?);
        let io = |e: std::io::Error| KafkaError::ClientCreation(format!("delivery thread: {e}"));
        // The timeout is a safety net: were a byte ever missed, a report would wait at most this
        // long.
        let wakeup = Arc::new(Wakeup::new(Duration::from_secs(1)).map_err(io)?);
        // SAFETY: the producer's client is live; the handle is dropped by the thread, before
        // the thread's producer handle.
        let queue = unsafe { Queue::main(producer.client().native_ptr()) }
            .ok_or_else(|| KafkaError::ClientCreation("no main queue".into()))?;
        queue.signal_to(wakeup.signal());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (producer, stop, wakeup) = (
                Arc::clone(&producer),
                Arc::clone(&stop),
                Arc::clone(&wakeup),
            );
            std::thread::Builder::new()
                .name("kafka deliveries".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        // Serve what is queued. Reports arriving as fast as they are served
                        // keep the length up; so would polls that stop taking anything, which
                        // must not become a spin: every 8 polls that leave the length as it was
                        // pause a millisecond.
                        let mut unchanged = 0;
                        while !stop.load(Ordering::Acquire) {
                            let queued = queue.len();
                            if queued == 0 {
                                break;
                            }
                            producer.poll(Duration::ZERO);
                            if queue.len() < queued {
                                unchanged = 0;
                                continue;
                            }
                            unchanged += 1;
                            if unchanged == 8 {
                                std::thread::sleep(Duration::from_millis(1));
                                unchanged = 0;
                            }
                        }
                        // A report queued between the length and this wait writes a byte first,
                        // so nothing waits here with reports pending.
                        wakeup.wait();
                    }
                    queue.stop_signalling();
                    drop(queue);
                })
                .map_err(io)?
        };
        Ok(Self {
            inner: Arc::new(Inner {
                producer,
                stop,
                wakeup,
                thread: Some(thread),
            }),
        })
    }

    /// Queues `record`; its delivery report comes through the returned future. A full queue
    /// (`QueueFull`) or another immediate refusal gives the record back with the error.
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        self.inner
            .producer
            .send(base)
            .map(|()| rx)
            .map_err(|(e, base)| {
                let record = FutureRecord {
                    topic: base.topic,
                    partition: base.partition,
                    payload: base.payload,
                    key: base.key,
                    timestamp: base.timestamp,
                    headers: base.headers,
                };
                (e, record)
            })
    }

    /// Queues `record`, waiting for room while the producer's queue is full (for up to
    /// `queue_timeout`; `None`: as long as it takes, which is backpressure), and returns the
    /// future of its delivery report.
    pub async fn enqueue<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Option<Duration>,
    ) -> Result<DeliveryFuture, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let deadline = queue_timeout.map(|t| std::time::Instant::now() + t);
        loop {
            match self.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if deadline.is_none_or(|d| std::time::Instant::now() < d) =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Queues `record` as [`enqueue`](Self::enqueue) does (up to `queue_timeout`), then waits
    /// for its delivery.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<Delivery, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        match self.enqueue(record, Some(queue_timeout)).await?.await {
            Ok(Ok(delivered)) => Ok(delivered),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        }
    }

    /// Waits up to `timeout` for every queued record to be delivered (or to fail).
    pub fn flush<T: Into<Timeout>>(&self, timeout: T) -> KafkaResult<()> {
        self.inner.producer.flush(timeout)
    }
}

impl AsyncProducer {
    /// Creates the producer (no connection is made yet) with the default context.
    pub fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        Self::from_config_and_context(config, DefaultClientContext)
    }
}

impl rdkafka::config::FromClientConfig for AsyncProducer {
    fn from_config(config: &ClientConfig) -> KafkaResult<Self> {
        AsyncProducer::from_config(config)
    }
}

impl<C: ClientContext + 'static> FromClientConfigAndContext<C> for AsyncProducer<C> {
    fn from_config_and_context(config: &ClientConfig, context: C) -> KafkaResult<Self> {
        AsyncProducer::from_config_and_context(config, context)
    }
}

impl<C: ClientContext + 'static> Drop for Inner<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.wakeup.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The producer's context: completes each record's delivery future, and hands logs and errors
/// to the wrapped context.
struct Reports<C> {
    wrapped: C,
}

impl<C: ClientContext + 'static> ClientContext for Reports<C> {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = C::ENABLE_REFRESH_OAUTH_TOKEN;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.wrapped.log(level, fac, log_message);
    }

    fn stats(&self, statistics: Statistics) {
        self.wrapped.stats(statistics);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.wrapped.stats_raw(statistics)
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.wrapped.error(error, reason);
    }

    fn generate_oauth_token(
        &self,
        oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        self.wrapped.generate_oauth_token(oauthbearer_config)
    }
}

impl<C: ClientContext + 'static> ProducerContext<NoCustomPartitioner> for Reports<C> {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((error, message)) => Err((error.clone(), message.detach())),
        };
        // The sender may have stopped waiting: nothing to tell.
        let _ = tx.send(owned);
    }
}
