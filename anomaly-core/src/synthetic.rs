//! Synthetic host metrics for load tests and demos: realistic-looking, deterministic per host and
//! step, with anomalies injected where asked.

use crate::schema::HOST_METRIC_NAMES;

/// One synthetic host: a daily-like CPU wave with its own phase, memory drifting slowly, load, disk
/// and network following CPU, and deterministic noise.
#[derive(Debug, Clone)]
pub struct SyntheticHost {
    seed: u64,
    phase: f64,
}

/// How an injected anomaly distorts a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    /// CPU pinned near 100 % while load and network stay as they were.
    CpuSaturation,
    /// Memory jumps to 97 %.
    MemoryLeak,
    /// Network receive ten times its usual rate.
    NetworkFlood,
}

impl SyntheticHost {
    /// Host number `index` (different hosts get different phases and noise).
    pub fn new(index: u64) -> Self {
        let seed = splitmix(index.wrapping_add(0x5EED));
        Self {
            seed,
            phase: (seed % 6283) as f64 / 1000.0,
        }
    }

    /// The seven host metrics (schema order, see [`HOST_METRIC_NAMES`]) at `step`.
    pub fn sample(&self, step: u64) -> [f64; HOST_METRIC_NAMES.len()] {
        let noise = |k: u64| {
            (splitmix(self.seed ^ step.wrapping_mul(31).wrapping_add(k)) % 10_000) as f64 / 10_000.0
                - 0.5
        };
        let wave = ((step as f64) / 300.0 + self.phase).sin() * 0.5 + 0.5;
        let cpu = (15.0 + 55.0 * wave + 4.0 * noise(0)).clamp(0.0, 100.0);
        [
            cpu,
            45.0 + 5.0 * ((step as f64) / 5000.0 + self.phase).sin() + noise(1),
            cpu / 25.0 + 0.2 * noise(2),
            (2e5 * wave + 2e4 * noise(3)).max(0.0),
            (4e5 * wave + 4e4 * noise(4)).max(0.0),
            (1e6 * wave + 5e4 * noise(5)).max(0.0),
            (6e5 * wave + 3e4 * noise(6)).max(0.0),
        ]
    }

    /// The sample at `step` with `injection` applied.
    pub fn anomalous_sample(
        &self,
        step: u64,
        injection: Injection,
    ) -> [f64; HOST_METRIC_NAMES.len()] {
        let mut s = self.sample(step);
        match injection {
            Injection::CpuSaturation => s[0] = 99.0,
            Injection::MemoryLeak => s[1] = 97.0,
            Injection::NetworkFlood => s[5] *= 10.0,
        }
        s
    }
}

/// A host whose every metric follows one 30-step cycle with a little deterministic jitter, in
/// schema order. A baseline of a few hundred steps covers everything it will ever do, which makes
/// it the reference normal host of tests: whatever a model flags on it later was injected.
pub fn cyclic_host_row(step: u64) -> [f64; HOST_METRIC_NAMES.len()] {
    let wave = (step as f64 / 30.0).sin() * 0.5 + 0.5;
    let jitter = ((step * 7919) % 17) as f64 / 17.0;
    [
        10.0 + 60.0 * wave + jitter,
        40.0 + jitter,
        2.0 * wave,
        1e5 * wave,
        2e5 * wave,
        5e5 * wave,
        3e5 * wave,
    ]
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_deterministic_plausible_and_differ_between_hosts() {
        let (a, b) = (SyntheticHost::new(0), SyntheticHost::new(1));
        assert_eq!(a.sample(42), SyntheticHost::new(0).sample(42));
        assert_ne!(a.sample(42), b.sample(42));
        for step in 0..2000 {
            let s = a.sample(step);
            assert!(
                (0.0..=100.0).contains(&s[0]) && (0.0..=100.0).contains(&s[1]),
                "{s:?}"
            );
            assert!(s.iter().all(|v| v.is_finite() && *v >= 0.0), "{s:?}");
        }
    }

    #[test]
    fn injections_change_only_their_metric() {
        let h = SyntheticHost::new(3);
        let (normal, leak) = (h.sample(7), h.anomalous_sample(7, Injection::MemoryLeak));
        assert_eq!(leak[1], 97.0);
        assert_eq!((leak[0], leak[5]), (normal[0], normal[5]));
        assert_eq!(
            h.anomalous_sample(7, Injection::NetworkFlood)[5],
            normal[5] * 10.0
        );
        assert_eq!(h.anomalous_sample(7, Injection::CpuSaturation)[0], 99.0);
    }
}
