//! librdkafka properties given on the command line (`--kafka-option KEY=VALUE`, repeatable), as
//! Vector's `librdkafka_options`: whatever the subcommands do not set themselves, or should set
//! differently, reaches every Kafka client they create.

use rdkafka::ClientConfig;

/// The `--kafka-option` flags of a subcommand.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct KafkaOptions {
    /// A librdkafka property for this command's Kafka clients, as `KEY=VALUE`; repeatable, and
    /// applied after the command's own settings, so it can change them. For example
    /// `session.timeout.ms=6000` (a crashed detector's partitions move sooner),
    /// `group.instance.id=detector-1` (static membership, where the broker supports it),
    /// `client.rack=eu-west-1a`, or `sasl.mechanism=PLAIN` with `sasl.username` and
    /// `sasl.password` over `security.protocol=sasl_plaintext`. TLS: `security.protocol=ssl`
    /// with `ssl.ca.location=/path/ca.pem` (the brokers' CA; the system's CAs without it), and
    /// `ssl.certificate.location` with `ssl.key.location` where brokers ask for a client
    /// certificate; SASL over TLS is `security.protocol=sasl_ssl`.
    #[arg(long = "kafka-option", value_name = "KEY=VALUE", value_parser = parse_kafka_option)]
    pub kafka_options: Vec<(String, String)>,
}

impl KafkaOptions {
    /// Sets every option on `config`, after what is already there.
    pub fn apply<'a>(&self, config: &'a mut ClientConfig) -> &'a mut ClientConfig {
        for (key, value) in &self.kafka_options {
            config.set(key, value);
        }
        config
    }

    /// The options as `(key, value)` pairs, in the order given.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kafka_options
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// What every producer of the apps starts from: `brokers`, idempotent with `acks=all`, so that a
/// retried send is neither lost nor written twice. Callers add their own settings, then
/// [`KafkaOptions::apply`].
pub fn idempotent_producer(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all");
    config
}

/// Parses a `--kafka-option` (`KEY=VALUE`, neither empty).
fn parse_kafka_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && !value.is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_as_key_value_and_override_what_was_set_before() {
        assert_eq!(
            parse_kafka_option(" linger.ms=20"),
            Ok(("linger.ms".to_string(), "20".to_string()))
        );
        // A value may itself hold `=` (a JAAS line, a password).
        assert_eq!(
            parse_kafka_option("sasl.password=a=b"),
            Ok(("sasl.password".to_string(), "a=b".to_string()))
        );
        for bad in ["linger.ms", "=5", "linger.ms="] {
            assert!(parse_kafka_option(bad).is_err(), "{bad}");
        }
        let options = KafkaOptions {
            kafka_options: vec![("linger.ms".to_string(), "20".to_string())],
        };
        let mut config = ClientConfig::new();
        config.set("linger.ms", "5");
        options.apply(&mut config);
        assert_eq!(config.get("linger.ms"), Some("20"));
    }
}
