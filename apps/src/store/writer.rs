//! Writes to the event store that survive the store's outages: a write that fails or hangs is
//! retried, with backoff, on a fresh connection, until it succeeds. Meanwhile the caller waits,
//! which is what pauses consumption (the stream runtime commits nothing a sink has not
//! acknowledged), and `/health` says why.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{AnomalyRow, Checkpoint, Position, Store, redact_url};
use crate::telemetry::Health;

/// The `/health` component a store problem is reported under.
const COMPONENT: &str = "database";
/// A write (connecting included) that has not finished by then is abandoned and retried on a
/// new connection: a store that hangs must not stall the detector silently.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Abandoned writes still blocked inside the database client; while this many are, no new
/// attempt starts (each holds a thread and a connection until the server answers or dies).
const MAX_STUCK_WRITES: usize = 4;
/// Backoff between attempts: from the first to the longest, doubling.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// A connection slot: `None` until connected, and again after a failure.
type Slot = Arc<Mutex<Option<Store>>>;

/// The detector's way to the event store; see the module documentation.
pub struct StoreWriter {
    url: String,
    slot: Mutex<Slot>,
    stuck: Arc<AtomicUsize>,
    health: Health,
}

impl StoreWriter {
    /// A writer for the store at `url` (see [`Store::open`]); it connects on first use.
    pub fn new(url: impl Into<String>, health: Health) -> Self {
        Self {
            url: url.into(),
            slot: Mutex::new(Arc::new(Mutex::new(None))),
            stuck: Arc::new(AtomicUsize::new(0)),
            health,
        }
    }

    /// A writer to the same store on a connection of its own, reporting to the same `/health`:
    /// for writes that must not queue behind this one's.
    pub fn another(&self) -> Self {
        Self::new(self.url.clone(), self.health.clone())
    }

    /// Connects now (applying migrations), so that a misconfigured store shows at start; on
    /// failure the error is returned and later writes keep trying.
    pub async fn connect(&self) -> anyhow::Result<()> {
        self.attempt(|_| Ok(())).await
    }

    /// Writes `rows` (see [`Store::upsert`]), retrying until the store takes them.
    pub async fn upsert(&self, rows: Vec<AnomalyRow>) {
        let rows = Arc::new(rows);
        self.retry(
            "cannot write anomaly events; consumption waits",
            move |store| store.upsert(&rows),
        )
        .await
    }

    /// Writes `rows` and `position` of `group` in one transaction (see [`Store::commit`]),
    /// retrying until the store takes them.
    pub async fn commit(&self, group: &str, rows: Vec<AnomalyRow>, position: Position) {
        let (group, rows) = (Arc::<str>::from(group), Arc::new(rows));
        let position = Arc::new(position);
        self.retry(
            "cannot write anomaly events and offsets; consumption waits",
            move |store| store.commit(&group, &rows, &position),
        )
        .await
    }

    /// Stores a partition's state as of offset `at` (see [`Store::save_state`]), retrying until
    /// the store takes it.
    pub async fn save_state(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        at: u64,
        bytes: Vec<u8>,
    ) {
        let (group, topic) = (Arc::<str>::from(group), Arc::<str>::from(topic));
        let bytes = Arc::new(bytes);
        self.retry(
            "cannot write the detector state; a restart would replay more",
            move |store| store.save_state(&group, &topic, partition, at, &bytes),
        )
        .await
    }

    /// The stored checkpoints (see [`Store::checkpoints`]), retrying until the store answers.
    pub async fn checkpoints(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Vec<Checkpoint> {
        let (group, topic) = (Arc::<str>::from(group), Arc::<str>::from(topic));
        let partitions = Arc::<[i32]>::from(partitions);
        self.retry(
            "cannot read the stored offsets; the partitions wait",
            move |store| store.checkpoints(&group, &topic, &partitions),
        )
        .await
    }

    /// Runs `op` until it succeeds, with backoff, reporting failures to `/health`.
    async fn retry<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl Fn(&mut Store) -> anyhow::Result<T> + Clone + Send + 'static,
    ) -> T {
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.attempt(op.clone()).await {
                Ok(value) => {
                    self.health.recovered(COMPONENT);
                    return value;
                }
                Err(e) => {
                    let problem = format!("{e:#}");
                    tracing::warn!(
                        error = %problem,
                        retry_in_ms = backoff.as_millis() as u64,
                        "{what}"
                    );
                    self.health.problem(COMPONENT, problem);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(LONGEST_BACKOFF);
                }
            }
        }
    }

    /// One operation on the current connection (made first if there is none), bounded by
    /// the write timeout (10 s), not retried; a failed connection is dropped, a hung one abandoned.
    pub async fn attempt<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        if self.stuck.load(Ordering::SeqCst) >= MAX_STUCK_WRITES {
            anyhow::bail!(
                "{MAX_STUCK_WRITES} earlier writes are still blocked in the database client (the server hangs)"
            );
        }
        let slot = Arc::clone(&self.slot.lock().unwrap_or_else(|e| e.into_inner()));
        let url = self.url.clone();
        let stuck = Arc::clone(&self.stuck);
        stuck.fetch_add(1, Ordering::SeqCst);
        let write = tokio::task::spawn_blocking(move || {
            // Counted out however the write ends, a panic included.
            let _in_flight = InFlight(stuck);
            let mut connection = slot.lock().unwrap_or_else(|e| e.into_inner());
            if connection.is_none() {
                *connection = Some(Store::open(&url)?);
            }
            let done = op(connection.as_mut().expect("connected above"));
            if done.is_err() {
                // A broken connection stays broken: the next attempt reconnects.
                *connection = None;
            }
            done
        });
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(anyhow::anyhow!("the store task failed: {join}")),
            Err(_) => {
                // The blocked task keeps its connection; later attempts get a fresh one.
                *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(Mutex::new(None));
                Err(anyhow::anyhow!(
                    "no answer from {} within {WRITE_TIMEOUT:?}",
                    redact_url(&self.url)
                ))
            }
        }
    }
}

/// One write in flight in the blocking pool; see [`MAX_STUCK_WRITES`].
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
