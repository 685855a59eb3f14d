//! The topology both `hot_hosts` examples run: on the in-memory `TestDriver`, and on a broker.

use anomaly_stream::window::{Mean, MeanAcc, TimeWindowConfig, TimeWindowSpec, WindowResult};
use anomaly_stream::{
    JsonCodec, MemorySink, Record, Rejection, Topology, TopologyBuilder, Utf8Codec,
};

/// What the topology keeps: each host's one-minute windows whose mean CPU passed 80 %.
pub(crate) type HotHosts = MemorySink<Record<String, WindowResult<String, MeanAcc>>>;

/// CPU readings (JSON numbers keyed by host) from `source`; readings that are not a percentage
/// go to `dead_letters`; the mean CPU per host over one-minute windows (5 s of grace), kept in
/// `hot` when it passed 80 %.
pub(crate) fn hot_hosts(
    source: &str,
    dead_letters: &str,
    hot: HotHosts,
) -> anomaly_stream::Result<Topology> {
    let builder = TopologyBuilder::new().dead_letter_topic(dead_letters);
    builder
        .stream_with::<String, f64>(source, Utf8Codec, JsonCodec)
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
        .to_sink("hot-hosts", hot);
    builder.build()
}

/// (host, seconds into the minute, cpu %): web-1 runs hot, web-2 does not, one reading is
/// garbage, and the last two, past the minute's end plus grace, close it for both hosts.
pub(crate) const READINGS: [(&str, i64, f64); 7] = [
    ("web-1", 0, 85.0),
    ("web-2", 1, 20.0),
    ("web-1", 30, 95.0),
    ("web-2", 31, 140.0),
    ("web-2", 40, 30.0),
    ("web-1", 66, 10.0),
    ("web-2", 66, 10.0),
];

/// Prints the hot windows, and checks what the examples promise: only web-1 ran hot.
pub(crate) fn report(hot: &HotHosts) {
    for record in hot.records() {
        let w = &record.value;
        println!(
            "{} ran hot in the minute starting at {} ms (event time): mean {:.1} % over {} readings",
            w.key,
            w.start_ms,
            w.aggregate.mean().unwrap_or(f64::NAN),
            w.count
        );
    }
    let hosts: Vec<String> = hot.records().into_iter().map(|r| r.value.key).collect();
    assert_eq!(hosts, ["web-1"]);
}
