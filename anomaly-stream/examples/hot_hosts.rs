//! A topology of your own on the in-memory [`TestDriver`]: CPU readings keyed by host, bad
//! readings dead-lettered, one-minute mean CPU per host, and the hosts whose mean passed 80 %
//! kept in a sink. The same `Topology` runs on a broker with `KafkaRuntime::builder(topology)`.
//!
//! ```text
//! cargo run -p anomaly-stream --example hot_hosts
//! ```

use anomaly_stream::topology::DLQ_REASON_HEADER;
use anomaly_stream::window::{Mean, MeanAcc, TimeWindowConfig, TimeWindowSpec, WindowResult};
use anomaly_stream::{
    JsonCodec, MemorySink, Record, Rejection, TestDriver, TopologyBuilder, Utf8Codec,
};

fn main() -> anomaly_stream::Result<()> {
    let hot: MemorySink<Record<String, WindowResult<String, MeanAcc>>> = MemorySink::new();
    let builder = TopologyBuilder::new().dead_letter_topic("readings-dlq");
    builder
        .stream_with::<String, f64>("readings", Utf8Codec, JsonCodec)
        // A reading that is not a percentage goes to the dead-letter topic, counted by reason.
        .validate(|_, cpu| {
            if (0.0..=100.0).contains(cpu) {
                Ok(())
            } else {
                Err(Rejection {
                    reason: "out_of_range",
                    message: format!("cpu {cpu} is not in 0..=100"),
                })
            }
        })
        .time_windows(
            TimeWindowConfig {
                grace_ms: 5_000,
                ..TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms: 60_000 })
            },
            Mean::new(|cpu: &f64| *cpu),
        )?
        .filter(|_, window| window.aggregate.mean().is_some_and(|mean| mean > 80.0))
        .to_sink("hot-hosts", hot.clone());
    let mut driver = TestDriver::new(builder.build()?);

    // (host, seconds, cpu %): web-1 runs hot, web-2 does not, and one reading is garbage.
    let readings = [
        ("web-1", 0, 85.0),
        ("web-2", 1, 20.0),
        ("web-1", 30, 95.0),
        ("web-2", 31, 140.0),
        ("web-2", 40, 30.0),
        // Past the window's end plus grace: the first minute closes for both hosts.
        ("web-1", 66, 10.0),
        ("web-2", 66, 10.0),
    ];
    for (host, secs, cpu) in readings {
        driver.send("readings", 0, &host.to_string(), &cpu, secs * 1_000)?;
    }

    for record in hot.records() {
        let w = &record.value;
        println!(
            "{} ran hot in [{} s, {} s): mean {:.1} % over {} readings",
            w.key,
            w.start_ms / 1_000,
            w.end_ms / 1_000,
            w.aggregate.mean().unwrap_or(f64::NAN),
            w.count
        );
    }
    for dead in driver.dead_letters() {
        println!(
            "dead letter ({}): {}",
            dead.header(DLQ_REASON_HEADER).unwrap_or("?"),
            String::from_utf8_lossy(&dead.value)
        );
    }
    // What the example promises, checked, so that the test suite's run of it means something.
    let hot_hosts: Vec<String> = hot.records().into_iter().map(|r| r.value.key).collect();
    assert_eq!(hot_hosts, ["web-1"]);
    assert_eq!(driver.dead_letters().len(), 1);
    Ok(())
}
