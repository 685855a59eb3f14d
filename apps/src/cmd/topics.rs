//! `anomaly topics`: create the topics the apps use (samples, anomalies, dead letters) on a broker
//! that does not create them on first use; topics that already exist are left alone.

use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
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
    let admin: AdminClient<DefaultClientContext> = options
        .apply(ClientConfig::new().set("bootstrap.servers", brokers))
        .create()
        .context("cannot create the admin client")?;
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
