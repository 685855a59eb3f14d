//! A topology of your own on the in-memory [`TestDriver`]: CPU readings keyed by host, bad
//! readings dead-lettered, one-minute mean CPU per host, and the hosts whose mean passed 80 %
//! kept in a sink (`shared/mod.rs`). `hot_hosts_kafka` runs the same topology on a broker.
//!
//! ```text
//! cargo run -p anomaly-stream --example hot_hosts
//! ```

mod shared;

use anomaly_stream::TestDriver;
use anomaly_stream::topology::DLQ_REASON_HEADER;

fn main() -> anomaly_stream::Result<()> {
    let hot = shared::HotHosts::new();
    let mut driver = TestDriver::new(shared::hot_hosts("readings", "readings-dlq", hot.clone())?);
    for (host, secs, cpu) in shared::READINGS {
        driver.send("readings", 0, &host.to_string(), &cpu, secs * 1_000)?;
    }
    shared::report(&hot);
    let dead = driver.dead_letters();
    for letter in &dead {
        println!(
            "dead letter ({}): {}",
            letter.header(DLQ_REASON_HEADER).unwrap_or("?"),
            String::from_utf8_lossy(&letter.value)
        );
    }
    assert_eq!(dead.len(), 1);
    Ok(())
}
