//! `anomaly collect` against fixture `/proc` and `/sys` folders: the Prometheus series it serves,
//! step by step with hand-computed values, and end to end over HTTP with live timers.

mod host_fixture;
mod support;

use std::time::{Duration, Instant};

use anomaly_apps::cmd::collect::run_until;
use anomaly_apps::collect::metric_names as names;
use anomaly_apps::collect::{Collector, ProcSource, Step};
use anomaly_apps::telemetry;
use host_fixture::{FakeHost, http_get, series_value};

#[test]
fn collector_steps_set_the_documented_series() {
    let handle = telemetry::prometheus_recorder().unwrap();
    names::describe();
    let fake = FakeHost::new("collect_steps");
    let source = ProcSource::new(fake.proc_root(), fake.sys_root());
    let host = "fixture-steps";
    let mut collector = Collector::new(host);
    let secs = Duration::from_secs;

    assert_eq!(
        collector.step(secs(10), 1_000, source.read()),
        Step::Baseline
    );

    // Two seconds, two steps of activity: 200 ticks of which 80 busy; sda 16 sectors (8 KiB) read
    // and 32 (16 KiB) written; eth0 2000 B in, 1000 B out; sda1, loop0 and lo ignored.
    fake.update(|c| {
        c.advance();
        c.advance();
        c.mem_available_kb = 4_096_000;
        c.load1 = "2.50";
    });
    let Step::Sample(sample) = collector.step(secs(12), 3_000, source.read()) else {
        panic!("expected a sample");
    };
    assert_eq!(sample.entity, host);
    assert_eq!(sample.timestamp_ms, 3_000);
    assert_eq!(
        sample.values.as_slice(),
        [40.0, 75.0, 2.5, 4_096.0, 8_192.0, 1_000.0, 500.0]
    );

    // eth0's driver is reloaded: its counters restart. The step is skipped, not a 1.8e19 B/s spike.
    fake.update(|c| {
        c.advance();
        c.eth0 = (1_000, 10);
    });
    assert_eq!(
        collector.step(secs(13), 4_000, source.read()),
        Step::Skipped {
            reason: "counter_reset"
        }
    );
    // A file that cannot be read is a skipped step too, and sampling resumes once it is back.
    fake.remove("stat");
    assert_eq!(
        collector.step(secs(14), 5_000, source.read()),
        Step::Skipped {
            reason: "read_error"
        }
    );
    // Two steps of activity since the last readable snapshot, two seconds ago.
    fake.update(|c| {
        c.advance();
        c.advance();
    });
    assert!(matches!(
        collector.step(secs(15), 6_000, source.read()),
        Step::Sample(_)
    ));

    handle.run_upkeep();
    let text = handle.render();
    let value = |name: &str, extra: &str| {
        series_value(&text, name, host, extra)
            .unwrap_or_else(|| panic!("{name}{{host={host:?}, {extra}}} missing from:\n{text}"))
    };
    // The last sample, in base units: ratios rather than percent.
    assert_eq!(value(names::CPU_BUSY_RATIO, ""), 0.4);
    assert_eq!(value(names::MEMORY_USED_RATIO, ""), 0.75);
    assert_eq!(value(names::LOAD1, ""), 2.5);
    assert_eq!(value(names::DISK_READ_BYTES_PER_SECOND, ""), 4_096.0);
    assert_eq!(value(names::DISK_WRITE_BYTES_PER_SECOND, ""), 8_192.0);
    assert_eq!(value(names::NETWORK_RECEIVE_BYTES_PER_SECOND, ""), 1_000.0);
    assert_eq!(value(names::NETWORK_TRANSMIT_BYTES_PER_SECOND, ""), 500.0);
    assert_eq!(value(names::SAMPLES_TOTAL, ""), 2.0);
    assert_eq!(
        value(names::SKIPPED_SAMPLES_TOTAL, "reason=\"counter_reset\""),
        1.0
    );
    assert_eq!(
        value(names::SKIPPED_SAMPLES_TOTAL, "reason=\"read_error\""),
        1.0
    );
    assert_eq!(value(names::SKIPPED_SAMPLES_TOTAL, "reason=\"clock\""), 0.0);
    // The kernel's own byte counters, per device, as node_exporter exports them: whole disks and
    // real interfaces only.
    let mut kernel = ((0, 0), (0, 0));
    fake.update(|c| kernel = (c.sda, c.eth0));
    let ((sda_read, sda_written), (eth0_rx, eth0_tx)) = kernel;
    let device = |name: &str, device: &str| value(name, &format!("device=\"{device}\""));
    assert_eq!(
        device(names::DISK_READ_BYTES_TOTAL, "sda"),
        (sda_read * 512) as f64
    );
    assert_eq!(
        device(names::DISK_WRITTEN_BYTES_TOTAL, "sda"),
        (sda_written * 512) as f64
    );
    // eth0 restarted from (1000, 10) mid-way: its series carries on from the 987,654,321 B
    // received (123,456,789 B sent) at the baseline plus the 2,000 (1,000) before the restart,
    // never going down, and adds everything the restarted counter holds.
    assert_eq!(
        device(names::NETWORK_RECEIVE_BYTES_TOTAL, "eth0"),
        (987_654_321 + 2_000 + eth0_rx) as f64
    );
    assert_eq!(
        device(names::NETWORK_TRANSMIT_BYTES_TOTAL, "eth0"),
        (123_456_789 + 1_000 + eth0_tx) as f64
    );
    for ignored in ["sda1", "loop0", "lo"] {
        assert!(
            !text.contains(&format!("device=\"{ignored}\"")),
            "{ignored} is exported:\n{text}"
        );
    }
    assert!(text.contains(&format!("# TYPE {} counter", names::DISK_READ_BYTES_TOTAL)));
    assert!(
        text.contains(&format!("# HELP {} CPU busy time", names::CPU_BUSY_RATIO)),
        "descriptions missing:\n{text}"
    );
    assert!(!text.contains("node_"), "foreign prefix in:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_serves_metrics_and_health_over_http() {
    let fake = FakeHost::new("collect_http");
    let host = "fixture-http";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let activity = fake.keep_busy(Duration::from_millis(20));
    let collector = tokio::spawn(run_until(
        fake.args(host, Duration::from_millis(50)),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    // Wait for a few samples, bounded.
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let (status, text) = tokio::task::spawn_blocking(move || http_get(address, "/metrics"))
            .await
            .unwrap();
        assert_eq!(status, 200);
        if series_value(&text, names::SAMPLES_TOTAL, host, "").unwrap_or(0.0) >= 5.0 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 5 samples within 20 s:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    drop(activity);

    let value = |name: &str| {
        series_value(&text, name, host, "")
            .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
    };
    let cpu = value(names::CPU_BUSY_RATIO);
    assert!((0.0..=1.0).contains(&cpu), "cpu busy ratio {cpu}");
    // Every fixture step is 40 % busy, so any mix of whole steps is too.
    assert!((cpu - 0.4).abs() < 1e-9, "cpu busy ratio {cpu}");
    assert_eq!(value(names::MEMORY_USED_RATIO), 0.25);
    assert_eq!(value(names::LOAD1), 1.25);
    // 20 ms steps of 4 KiB read: ~200 KiB/s while busy; timer jitter moves it, so only bound it.
    for (name, per_step) in [
        (names::DISK_READ_BYTES_PER_SECOND, 4_096.0),
        (names::DISK_WRITE_BYTES_PER_SECOND, 8_192.0),
        (names::NETWORK_RECEIVE_BYTES_PER_SECOND, 1_000.0),
        (names::NETWORK_TRANSMIT_BYTES_PER_SECOND, 500.0),
    ] {
        let rate = value(name);
        assert!(
            rate >= 0.0 && rate <= per_step * 1_000.0,
            "{name} = {rate} is implausible"
        );
    }
    assert_eq!(
        series_value(&text, names::SKIPPED_SAMPLES_TOTAL, host, "counter_reset"),
        Some(0.0)
    );
    assert!(text.contains(&format!("# TYPE {} counter", names::SAMPLES_TOTAL)));

    let (status, body) = tokio::task::spawn_blocking(move || http_get(address, "/health"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _) = tokio::task::spawn_blocking(move || http_get(address, "/nope"))
        .await
        .unwrap();
    assert_eq!(status, 404);

    stop.send(()).unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), collector)
        .await
        .expect("the collector stops promptly")
        .unwrap()
        .unwrap();
    assert!(report.samples >= 5, "{report:?}");
    assert_eq!(report.delivery, None);
    // The listener is closed once the collector returned.
    assert!(std::net::TcpStream::connect(address).is_err());
}
