//! `anomaly topics`: create the topics the apps use (samples, anomalies, dead letters) on a broker
//! that does not create them on first use; topics that already exist are left alone.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::kafka_options::KafkaOptions;

/// Arguments of `anomaly topics`.
#[derive(Debug, Clone, clap::Args)]
pub struct TopicsArgs {
    /// Kafka bootstrap servers (`host:port,...`).
    #[arg(long, env = "ANOMALY_BROKERS")]
    pub brokers: String,
    /// librdkafka properties for the admin client.
    #[command(flatten)]
    pub kafka: KafkaOptions,
    /// Partitions of each new topic: the most detector instances (or cores) that can share it.
    #[arg(long, default_value = "3")]
    pub partitions: i32,
    /// Replicas of each new topic's partitions.
    #[arg(long, default_value = "1")]
    pub replication: i32,
    /// The topics.
    #[arg(required = true)]
    pub topics: Vec<String>,
}

/// Creates the topics and prints which were new.
pub fn run(args: TopicsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    let created = runtime.block_on(create(
        &args.brokers,
        &args.kafka,
        &topics,
        args.partitions,
        args.replication,
    ))?;
    for topic in &args.topics {
        let what = if created.contains(topic) {
            "created"
        } else {
            "exists"
        };
        println!("{topic}: {what}");
    }
    Ok(())
}

/// Creates those of `topics` that do not exist yet, with `partitions` each, and returns their names.
pub async fn create(
    brokers: &str,
    options: &KafkaOptions,
    topics: &[&str],
    partitions: i32,
    replication: i32,
) -> anyhow::Result<Vec<String>> {
    let mut config = ClientConfig::new();
    options.apply(config.set("bootstrap.servers", brokers));
    let probe_config = config.clone();
    let brokers_owned = brokers.to_string();
    tokio::task::spawn_blocking(move || reach(&brokers_owned, probe_config, REACH_WAIT))
        .await
        .context("the broker probe panicked")??;
    let admin: AdminClient<DefaultClientContext> =
        config.create().context("cannot create the admin client")?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        tokio::time::timeout(Duration::from_secs(30), admin.create_topics(&new, &options))
            .await
            .with_context(|| format!("no Kafka broker answered at {brokers} within 30 s"))?
            .with_context(|| format!("cannot create topics at {brokers}"))?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, e)) => anyhow::bail!("cannot create topic {topic} at {brokers}: {e}"),
        }
    }
    Ok(created)
}

/// How long [`reach`] waits for a broker.
const REACH_WAIT: Duration = Duration::from_secs(30);

/// Waits until a broker at `brokers` answers a metadata request, for at most `wait`. librdkafka
/// retries a broker it cannot reach and says why only in its log and error events, which its
/// admin client never reads: a producer's poll does, so that a refusal (a certificate not
/// trusted, the wrong protocol, a failed SASL login) reaches the user as the reason.
fn reach(brokers: &str, mut config: ClientConfig, wait: Duration) -> anyhow::Result<()> {
    // Whatever the `log` crate's level: why a broker is unreachable is a warning.
    config.set_log_level(RDKafkaLogLevel::Warning);
    let probe: BaseProducer<LastError> = config
        .create_with_context(LastError::default())
        .context("cannot create a Kafka client")?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        if probe
            .client()
            .fetch_metadata(None, Duration::from_millis(500))
            .is_ok()
        {
            return Ok(());
        }
        probe.poll(Duration::ZERO);
        if std::time::Instant::now() >= deadline {
            let last = probe.context().last.lock().unwrap().take();
            return Err(match last {
                Some(reason) => anyhow::anyhow!(
                    "no Kafka broker answered at {brokers} within {wait:?}: {reason}"
                ),
                None => anyhow::anyhow!("no Kafka broker answered at {brokers} within {wait:?}"),
            });
        }
    }
}

/// The probe's context: keeps the client's last error or warning.
#[derive(Default)]
struct LastError {
    last: Mutex<Option<String>>,
}

impl ProducerContext for LastError {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

impl ClientContext for LastError {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            // Repeated on every retry: the caller reports the last one.
            tracing::debug!(facility, "librdkafka: {message}");
            *self.last.lock().unwrap() = Some(message.to_string());
        } else {
            tracing::debug!(facility, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "Kafka client error; retrying");
        // A log line names the broker and the cause; an error event is often only "all brokers
        // are down".
        self.last
            .lock()
            .unwrap()
            .get_or_insert_with(|| format!("{error}: {reason}"));
    }
}
