//! Scratch folders for unit tests, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tests run in parallel threads of one process, so the process id alone is not unique.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A fresh folder under the system temp dir, deleted (best effort) on drop.
pub(crate) struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates an empty folder whose name contains `label`.
    pub(crate) fn new(label: &str) -> Self {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("anomaly-core-{label}-{}-{id}", std::process::id()));
        // A leftover from a killed earlier run with the same pid must not leak into this test.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test dir");
        Self { path }
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` to `relative` (creating parent folders) and returns the full path.
    pub(crate) fn write(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dir");
        }
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
