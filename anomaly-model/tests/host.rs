//! A host's adaptive decision state: it follows slow drift of normal behaviour, cannot learn an
//! incident as normal while the incident is young, and accepts a level that lasted long enough.
//! The windows' per-metric errors are given directly, so every figure below is known exactly.

mod common;

use anomaly_core::alerting::{EventChange, EventRule};
use anomaly_model::{Adaptation, DetectorKind, HostDetector, Model, TrainingConfig};

fn model(adaptation: Adaptation) -> Model {
    let config = TrainingConfig {
        adaptation,
        ..TrainingConfig::default()
    };
    Model::train(
        &common::schema(),
        &common::host_rows(3000),
        DetectorKind::Pca,
        &config,
        &mut |_| {},
    )
    .expect("training")
}

/// Feeds `windows` windows whose errors are all 1 except metric 0, which is `error(i)`; returns
/// every event change with its window index.
fn feed(
    host: &mut HostDetector,
    model: &Model,
    windows: std::ops::Range<usize>,
    error: impl Fn(usize) -> f32,
) -> Vec<(usize, EventChange)> {
    let dims = model.shape().dims;
    let mut changes = Vec::new();
    for i in windows {
        let mut errors = vec![1.0f32; dims];
        errors[0] = error(i);
        if let Some(change) = host.observe(model, &errors, i as i64).change {
            changes.push((i, change));
        }
    }
    changes
}

/// A metric error that, averaged with six others at 1, puts the score at `score`.
fn error_for_score(model: &Model, score: f64) -> f32 {
    let dims = model.shape().dims as f64;
    (score * dims - (dims - 1.0)) as f32
}

#[test]
fn a_level_that_lasts_is_one_event_then_the_new_normal() {
    let model = model(Adaptation::default());
    let threshold = model.manifest().threshold;
    let shifted = error_for_score(&model, 3.0 * threshold);
    let mut host = HostDetector::new(&model, EventRule::default()).unwrap();
    let changes = feed(&mut host, &model, 0..5000, |i| {
        if i < 1000 { 1.0 } else { shifted }
    });

    let opened: Vec<usize> = changes
        .iter()
        .filter(|(_, c)| matches!(c, EventChange::Opened { .. }))
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(opened.len(), 1, "one event for one shift: {changes:?}");
    assert!((1000..1005).contains(&opened[0]), "{changes:?}");
    let closed = changes
        .iter()
        .find(|(_, c)| matches!(c, EventChange::Closed(_)))
        .map(|(i, _)| *i)
        .expect("the event closes once the level is learnt");
    let relearn_after = Adaptation::default().relearn_after;
    assert!(
        closed > 1000 + relearn_after,
        "not learnt before {relearn_after} windows: closed at {closed}"
    );
    assert!(closed < 1000 + relearn_after + 1000, "closed at {closed}");
    assert!(host.typical_errors()[0] > 0.5 * shifted);
    assert!(!host.in_event());
}

#[test]
fn without_relearning_an_incident_never_teaches_itself_normal() {
    let model = model(Adaptation {
        relearn_after: 0,
        ..Adaptation::default()
    });
    let shifted = error_for_score(&model, 3.0 * model.manifest().threshold);
    let mut host = HostDetector::new(&model, EventRule::default()).unwrap();
    let changes = feed(&mut host, &model, 0..5000, |i| {
        if i < 1000 { 1.0 } else { shifted }
    });
    assert_eq!(changes.len(), 1, "opened and never closed: {changes:?}");
    assert!(host.in_event());
    // Frozen at what the normal windows taught it, give or take the first shifted window, which
    // the smoothing kept under the threshold.
    assert!(
        (host.typical_errors()[0] - 1.0).abs() < 0.05,
        "{:?}",
        host.typical_errors()
    );
}

#[test]
fn slow_drift_below_the_threshold_is_followed_and_the_same_input_gives_the_same_output() {
    let model = model(Adaptation::default());
    // Metric 0's error creeps from 1 to 4 over 20,000 windows, never enough to cross.
    let drift = |i: usize| 1.0 + 3.0 * i as f32 / 20_000.0;
    let mut host = HostDetector::new(&model, EventRule::default()).unwrap();
    assert!(feed(&mut host, &model, 0..20_000, drift).is_empty());
    let learnt = host.typical_errors()[0];
    assert!((3.0..4.0).contains(&learnt), "typical error {learnt}");

    let mut again = HostDetector::new(&model, EventRule::default()).unwrap();
    feed(&mut again, &model, 0..20_000, drift);
    assert_eq!(again.typical_errors(), host.typical_errors());
}

#[test]
fn without_adaptation_the_drift_is_not_followed() {
    let model = model(Adaptation::none());
    let mut host = HostDetector::new(&model, EventRule::default()).unwrap();
    feed(&mut host, &model, 0..5000, |i| 1.0 + i as f32 / 5000.0);
    assert_eq!(host.typical_errors()[0], 1.0);
}

#[test]
fn a_host_holds_a_few_hundred_bytes() {
    let model = model(Adaptation::default());
    let host = HostDetector::new(&model, EventRule::default()).unwrap();
    let total = std::mem::size_of::<HostDetector>() + host.heap_bytes();
    assert!(total < 512, "{total} bytes per host");
}
