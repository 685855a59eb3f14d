//! Window semantics through whole pipelines, on the in-memory `TestDriver` (no broker).

use anomaly_stream::sink::BoxFuture;
use anomaly_stream::topology::{
    DLQ_ERROR_HEADER, DLQ_OFFSET_HEADER, DLQ_PARTITION_HEADER, DLQ_REASON_HEADER, DLQ_TOPIC_HEADER,
};
use anomaly_stream::window::{
    Count, CountWindowSpec, Sum, TimeWindowConfig, TimeWindowSpec, WindowResult, WindowTrigger,
};
use anomaly_stream::{
    CommitPoint, Error, JsonCodec, MemorySink, Record, Rejection, SourceOffset, TestDriver,
    TopologyBuilder, TransactionalSink, Utf8Codec,
};

type Windows = MemorySink<Record<String, WindowResult<String, f64>>>;

/// `metrics` (String keys, f64 values) -> tumbling sum windows -> memory sink; late records to a
/// second memory sink.
fn sum_pipeline(
    config: TimeWindowConfig,
) -> (TestDriver, Windows, MemorySink<Record<String, f64>>) {
    let windows = MemorySink::new();
    let late = MemorySink::new();
    let builder = TopologyBuilder::new().dead_letter_topic("dlq");
    let late_sink = late.clone();
    builder
        .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
        .time_windows_with_late(config, Sum::new(|v: &f64| *v), move |s| {
            s.to_sink("late", late_sink)
        })
        .unwrap()
        .to_sink("windows", windows.clone());
    (TestDriver::new(builder.build().unwrap()), windows, late)
}

fn tumbling(size_ms: u64, grace_ms: u64) -> TimeWindowConfig {
    TimeWindowConfig {
        grace_ms,
        ..TimeWindowConfig::new(TimeWindowSpec::Tumbling { size_ms })
    }
}

fn summary(sink: &Windows) -> Vec<(String, i64, f64, u64, WindowTrigger)> {
    sink.records()
        .into_iter()
        .map(|r| {
            let w = r.value;
            (w.key, w.start_ms, w.aggregate, w.count, w.trigger)
        })
        .collect()
}

fn send(d: &mut TestDriver, partition: i32, key: &str, t: i64, v: f64) {
    d.send("metrics", partition, &key.to_string(), &v, t)
        .unwrap();
}

#[test]
fn tumbling_boundaries_are_half_open() {
    let (mut d, windows, _) = sum_pipeline(tumbling(1_000, 0));
    send(&mut d, 0, "a", 0, 1.0);
    send(&mut d, 0, "a", 999, 2.0);
    assert!(windows.records().is_empty());
    send(&mut d, 0, "a", 1_000, 4.0); // belongs to [1000, 2000) and closes [0, 1000)
    assert_eq!(
        summary(&windows),
        vec![("a".into(), 0, 3.0, 2, WindowTrigger::Watermark)]
    );
    // The window record carries the window's last millisecond as its timestamp.
    assert_eq!(windows.records()[0].timestamp_ms, 999);
}

#[test]
fn grace_accepts_late_records_then_late_goes_to_side_output() {
    let (mut d, windows, late) = sum_pipeline(tumbling(1_000, 500));
    send(&mut d, 0, "a", 100, 1.0);
    send(&mut d, 0, "a", 1_200, 1.0); // watermark 1200 < 1000 + 500
    send(&mut d, 0, "a", 900, 5.0); // within grace: joins [0, 1000)
    assert!(windows.records().is_empty());
    send(&mut d, 0, "a", 1_500, 1.0); // watermark 1500 closes [0, 1000)
    assert_eq!(
        summary(&windows),
        vec![("a".into(), 0, 6.0, 2, WindowTrigger::Watermark)]
    );
    send(&mut d, 0, "a", 999, 7.0); // too late
    let late = late.records();
    assert_eq!(late.len(), 1);
    assert_eq!(
        (late[0].key.as_str(), late[0].value, late[0].timestamp_ms),
        ("a", 7.0, 999)
    );
}

#[test]
fn idle_keys_close_on_the_drivers_wall_clock() {
    let config = TimeWindowConfig {
        idle_timeout_ms: Some(10_000),
        ..tumbling(60_000, 0)
    };
    let (mut d, windows, _) = sum_pipeline(config);
    send(&mut d, 0, "a", 1_000, 2.0);
    d.advance_time(5_000).unwrap(); // first tick marks "a" active
    d.advance_time(5_000).unwrap();
    assert!(windows.records().is_empty());
    d.advance_time(10_000).unwrap(); // 10 s without a record since the last tick
    assert_eq!(
        summary(&windows),
        vec![("a".into(), 0, 2.0, 1, WindowTrigger::Idle)]
    );
    // Another tick emits nothing more.
    d.advance_time(60_000).unwrap();
    assert_eq!(windows.records().len(), 1);
}

#[test]
fn partitions_have_independent_watermarks_and_many_keys_work() {
    let (mut d, windows, _) = sum_pipeline(tumbling(1_000, 0));
    for k in 0..500 {
        send(&mut d, k % 4, &format!("host-{k}"), 10, 1.0);
        send(&mut d, k % 4, &format!("host-{k}"), 20, 1.0);
    }
    // Partition 0 advances; only its 125 keys' windows close.
    send(&mut d, 0, "clock", 5_000, 0.0);
    let out = summary(&windows);
    assert_eq!(out.len(), 125);
    assert!(
        out.iter()
            .all(|(_, start, sum, count, _)| (*start, *sum, *count) == (0, 2.0, 2))
    );
    for p in 1..4 {
        send(&mut d, p, "clock", 5_000, 0.0);
    }
    assert_eq!(windows.records().len(), 500);
}

#[test]
fn poison_records_go_to_the_dead_letter_topic_with_headers() {
    let (mut d, windows, _) = sum_pipeline(tumbling(1_000, 0));
    send(&mut d, 3, "a", 0, 1.0);
    d.send_raw("metrics", 3, Some(b"a"), b"{not json", 5)
        .unwrap();
    d.send_raw("metrics", 3, Some(b"\xff\xfe"), b"1.0", 5)
        .unwrap(); // key not UTF-8
    send(&mut d, 3, "a", 1_000, 1.0);
    assert_eq!(windows.records().len(), 1);
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].value, b"{not json");
    assert_eq!(dead[0].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(dead[0].header(DLQ_TOPIC_HEADER), Some("metrics"));
    assert_eq!(dead[0].header(DLQ_PARTITION_HEADER), Some("3"));
    assert_eq!(dead[0].header(DLQ_OFFSET_HEADER), Some("1"));
    assert!(dead[0].header(DLQ_ERROR_HEADER).unwrap().contains("json"));
    assert!(dead[1].header(DLQ_ERROR_HEADER).unwrap().contains("utf8"));
    assert_eq!(dead[0].header(DLQ_REASON_HEADER), Some("undecodable"));
    assert_eq!(dead[1].header(DLQ_REASON_HEADER), Some("undecodable"));
}

#[test]
fn validation_and_size_limits_dead_letter_with_their_reason_and_let_the_rest_through() {
    let kept = MemorySink::new();
    let builder = TopologyBuilder::new()
        .dead_letter_topic("dlq")
        .max_record_bytes(16);
    builder
        .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
        .validate(|host, value| {
            if host.len() > 4 {
                Err(Rejection {
                    reason: "host_name",
                    message: format!("host name of {} bytes", host.len()),
                })
            } else if *value < 0.0 {
                Err(Rejection {
                    reason: "negative",
                    message: format!("{value} < 0"),
                })
            } else {
                Ok(())
            }
        })
        .to_sink("kept", kept.clone());
    let mut d = TestDriver::new(builder.build().unwrap());
    d.send("metrics", 0, &"web".to_string(), &1.0, 0).unwrap();
    d.send("metrics", 0, &"web-12".to_string(), &2.0, 1)
        .unwrap();
    d.send("metrics", 0, &"db".to_string(), &-3.0, 2).unwrap();
    d.send_raw("metrics", 0, Some(b"db"), &[b'1'; 20], 3)
        .unwrap();
    d.send("metrics", 0, &"db".to_string(), &4.0, 4).unwrap();

    let values: Vec<f64> = kept.records().iter().map(|r| r.value).collect();
    assert_eq!(values, [1.0, 4.0]);
    let dead = d.dead_letters();
    let reasons: Vec<_> = dead.iter().map(|m| m.header(DLQ_REASON_HEADER)).collect();
    assert_eq!(
        reasons,
        [Some("host_name"), Some("negative"), Some("oversized")]
    );
    assert!(
        dead[0]
            .header(DLQ_ERROR_HEADER)
            .unwrap()
            .contains("6 bytes")
    );
    assert!(
        dead[2]
            .header(DLQ_ERROR_HEADER)
            .unwrap()
            .contains("22 bytes")
    );
    assert_eq!(dead[2].header(DLQ_OFFSET_HEADER), Some("3"));
}

#[test]
fn operator_errors_go_to_the_dead_letter_topic_too() {
    let (mut d, _, _) = sum_pipeline(tumbling(1_000, 0));
    send(&mut d, 0, "a", i64::MAX, 1.0); // beyond the supported timestamp range
    let dead = d.dead_letters();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .header(DLQ_ERROR_HEADER)
            .unwrap()
            .contains("timestamp")
    );
}

#[test]
fn without_a_dead_letter_topic_a_poison_record_is_an_error_not_a_drop() {
    let builder = TopologyBuilder::new();
    builder
        .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
        .to_sink("all", MemorySink::new());
    let mut d = TestDriver::new(builder.build().unwrap());
    let err = d.send_raw("metrics", 0, None, b"garbage", 0).unwrap_err();
    assert!(
        matches!(err, Error::Undeliverable { offset: 0, .. }),
        "{err}"
    );
}

#[test]
fn restart_replays_state_without_emitting_any_window_twice() {
    let (mut d, windows, _) = sum_pipeline(tumbling(1_000, 0));
    let mut reference = sum_pipeline(tumbling(1_000, 0));
    let inputs: Vec<(&str, i64, f64)> = (0..40)
        .map(|i| (["a", "b", "c"][i % 3], (i as i64) * 130, i as f64))
        .collect();
    for (i, &(k, t, v)) in inputs.iter().enumerate() {
        send(&mut d, 0, k, t, v);
        send(&mut reference.0, 0, k, t, v);
        if i % 7 == 3 {
            let point = d.restart_partition("metrics", 0).unwrap();
            assert_eq!(point.offset, i as u64 + 1);
            assert!(point.replay_from <= point.offset);
        }
    }
    assert!(!windows.records().is_empty());
    assert_eq!(summary(&windows), summary(&reference.1));
}

#[test]
fn restart_from_an_old_commit_re_emits_but_loses_nothing() {
    let (mut d, windows, _) = sum_pipeline(tumbling(1_000, 0));
    let mut points = Vec::new();
    for i in 0..30 {
        send(&mut d, 0, "a", i * 250, 1.0);
        points.push(d.commit_point("metrics", 0).unwrap());
    }
    let before = summary(&windows);
    // Crash: the commit taken after offset 12 is the last one that reached the broker.
    let old: CommitPoint = points[12];
    assert!(old.replay_from < old.offset);
    d.restart_partition_at("metrics", 0, old).unwrap();
    let after = summary(&windows);
    // Windows closed by offsets 13..30 again, identical; nothing else.
    let again = &after[before.len()..];
    assert_eq!(again, &before[before.len() - again.len()..]);
    assert_eq!(again.len(), 4);
}

#[test]
fn stateless_operators_and_side_outputs() {
    let evens = MemorySink::new();
    let odds = MemorySink::new();
    let all = MemorySink::new();
    let builder = TopologyBuilder::new();
    let (odds_sink, all_sink) = (odds.clone(), all.clone());
    builder
        .stream::<String, i64>("numbers", JsonCodec)
        .filter(|_, v| *v >= 0)
        .flat_map(|k, v| [(k.clone(), v), (k, v + 100)])
        .tee(move |s| s.to_sink("all", all_sink))
        .divert(|_, v| v % 2 == 1, move |s| s.to_sink("odds", odds_sink))
        .key_by(|k, v| format!("{k}-{v}"))
        .map(|k, v| (k, v * 10))
        .map_values(|v| v + 1)
        .to_sink("evens", evens.clone());
    let mut d = TestDriver::new(builder.build().unwrap());
    for v in [-1i64, 1, 2] {
        d.send("numbers", 0, &"k".to_string(), &v, 7).unwrap();
    }
    let values = |s: &MemorySink<Record<String, i64>>| {
        s.records()
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&all).len(), 4);
    assert_eq!(values(&odds), vec![("k".into(), 1), ("k".into(), 101)]);
    assert_eq!(
        values(&evens),
        vec![("k-2".into(), 21), ("k-102".into(), 1021)]
    );
    assert!(evens.records().iter().all(|r| r.timestamp_ms == 7));
}

#[test]
fn count_and_row_windows_through_a_topic_sink() {
    let builder = TopologyBuilder::new().dead_letter_topic("dlq");
    builder
        .stream_with::<String, Vec<f32>>("samples", Utf8Codec, JsonCodec)
        .row_windows(CountWindowSpec::sliding(2, 1).unwrap(), 2, |v, row| {
            row.extend_from_slice(v)
        })
        .unwrap()
        .map_values(|rows| rows.values)
        .to_topic_with("windows", Utf8Codec, JsonCodec);
    let mut d = TestDriver::new(builder.build().unwrap());
    let host = "h".to_string();
    d.send("samples", 0, &host, &vec![1.0f32, 2.0], 1).unwrap();
    d.send("samples", 0, &host, &vec![3.0f32, 4.0], 2).unwrap();
    d.send("samples", 0, &host, &vec![5.0f32], 3).unwrap(); // wrong width: dead letter
    d.send("samples", 0, &host, &vec![5.0f32, 6.0], 4).unwrap();
    let out = d.read_topic("windows", &Utf8Codec, &JsonCodec).unwrap();
    let values: Vec<Vec<f32>> = out.into_iter().map(|r| r.value).collect();
    assert_eq!(
        values,
        vec![vec![1.0, 2.0, 3.0, 4.0], vec![3.0, 4.0, 5.0, 6.0]]
    );
    assert_eq!(d.dead_letters().len(), 1);
    assert_eq!(d.dead_letters()[0].header(DLQ_OFFSET_HEADER), Some("2"));

    let counts = MemorySink::new();
    let builder = TopologyBuilder::new();
    builder
        .stream::<String, u32>("n", JsonCodec)
        .count_windows(CountWindowSpec::tumbling(2).unwrap())
        .unwrap()
        .map_values(|w| w.values)
        .to_sink("counts", counts.clone());
    let mut d = TestDriver::new(builder.build().unwrap());
    for v in 0..5u32 {
        d.send("n", 0, &"k".to_string(), &v, 0).unwrap();
    }
    let got: Vec<Vec<u32>> = counts.records().into_iter().map(|r| r.value).collect();
    assert_eq!(got, vec![vec![0, 1], vec![2, 3]]);
}

#[test]
fn transactional_sink_stores_offsets_with_outputs() {
    let sink = MemorySink::new();
    let builder = TopologyBuilder::new();
    builder
        .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
        .time_windows(tumbling(1_000, 0), Count)
        .unwrap()
        .to_transactional("db", sink.clone());
    let topology = builder.build().unwrap();
    assert!(topology.is_exactly_once());
    let mut d = TestDriver::new(topology);
    for t in [0, 10, 1_000, 1_500] {
        d.send("metrics", 2, &"a".to_string(), &1.0, t).unwrap();
    }
    assert_eq!(sink.records().len(), 1);
    let offsets = sink.offsets();
    assert_eq!(offsets.len(), 1);
    assert_eq!((offsets[0].partition, offsets[0].offset), (2, 4));
    // The open window [1000, 2000) still needs offset 2.
    assert_eq!(offsets[0].replay_from, 2);
}

#[test]
fn invalid_topologies_are_rejected() {
    let builder = TopologyBuilder::new();
    builder
        .stream::<String, f64>("t", JsonCodec)
        .tee(|_unfinished| {})
        .to_sink("x", MemorySink::new());
    assert!(matches!(builder.build(), Err(Error::Topology(_))));

    let builder = TopologyBuilder::new();
    builder
        .stream::<String, f64>("t", JsonCodec)
        .to_sink("x", MemorySink::new());
    builder
        .stream::<String, f64>("t", JsonCodec)
        .to_sink("y", MemorySink::new());
    assert!(matches!(builder.build(), Err(Error::Topology(_))));

    let builder = TopologyBuilder::new();
    builder
        .stream::<String, f64>("t", JsonCodec)
        .tee(|s| s.to_topic("copy", JsonCodec))
        .to_transactional("db", MemorySink::new());
    assert!(matches!(builder.build(), Err(Error::Topology(_))));
    assert!(matches!(
        TopologyBuilder::new().build(),
        Err(Error::Topology(_))
    ));
}

/// A transactional sink that keeps what it is asked to replay.
#[derive(Clone, Default)]
struct ReplayingSink {
    written: MemorySink<Record<String, f64>>,
    replayed: std::sync::Arc<std::sync::Mutex<Vec<(i32, f64)>>>,
}

impl TransactionalSink<Record<String, f64>> for ReplayingSink {
    fn write_transaction(
        &self,
        batch: Vec<Record<String, f64>>,
        offsets: Vec<SourceOffset>,
    ) -> BoxFuture<'_, anomaly_stream::Result<()>> {
        self.written.write_transaction(batch, offsets)
    }

    fn load_offsets<'a>(
        &'a self,
        topic: &'a str,
        partitions: &'a [i32],
    ) -> BoxFuture<'a, anomaly_stream::Result<Vec<SourceOffset>>> {
        self.written.load_offsets(topic, partitions)
    }

    fn replay<'a>(
        &'a self,
        batch: Vec<Record<String, f64>>,
        _topic: &'a str,
        partition: i32,
    ) -> BoxFuture<'a, anomaly_stream::Result<()>> {
        let mut replayed = self.replayed.lock().unwrap();
        replayed.extend(batch.into_iter().map(|r| (partition, r.value)));
        Box::pin(async { Ok(()) })
    }
}

#[test]
fn a_transactional_sink_is_handed_the_replayed_records_and_writes_only_the_new_ones() {
    let sink = ReplayingSink::default();
    let builder = TopologyBuilder::new();
    builder
        .stream_with::<String, f64>("metrics", Utf8Codec, JsonCodec)
        .to_transactional("db", sink.clone());
    let mut d = TestDriver::new(builder.build().unwrap());
    for v in 0..6 {
        d.send("metrics", 1, &"a".to_string(), &f64::from(v), 0)
            .unwrap();
    }
    assert_eq!(sink.written.records().len(), 6);
    // A sink whose state is stored as of offset 2, with offsets up to 5 written: records 2..5
    // come again as a replay, and only offset 5 onwards is written again.
    d.restart_partition_at(
        "metrics",
        1,
        CommitPoint {
            offset: 5,
            replay_from: 2,
        },
    )
    .unwrap();
    assert_eq!(
        *sink.replayed.lock().unwrap(),
        [(1, 2.0), (1, 3.0), (1, 4.0)]
    );
    let values: Vec<f64> = sink.written.records().iter().map(|r| r.value).collect();
    assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0]);
}
