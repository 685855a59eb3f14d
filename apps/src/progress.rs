//! Training progress for people: a one-line bar on a terminal, log lines otherwise.

use std::io::{IsTerminal, Write};

use anomaly_model::TrainingProgress;

/// Reports epochs of a training run as a redrawn bar on a terminal, or as log lines when stderr
/// is a file or a pipe (CI, systemd, containers).
pub struct ProgressReporter {
    label: String,
    terminal: bool,
}

impl ProgressReporter {
    /// A reporter for the training run called `label` (an entity or host name).
    pub fn new(label: impl Into<String>) -> Self {
        Self {
            label: label.into(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Reports one finished epoch.
    pub fn report(&self, p: &TrainingProgress) {
        if self.terminal {
            const WIDTH: usize = 30;
            let filled = (p.epoch * WIDTH / p.max_epochs.max(1)).min(WIDTH);
            let mut err = std::io::stderr().lock();
            // Redraw in place; the final newline comes from `finish`.
            let _ = write!(
                err,
                "\rtraining {} [{}{}] epoch {}/{} loss {:.5} held-out {:.5}",
                self.label,
                "=".repeat(filled),
                " ".repeat(WIDTH - filled),
                p.epoch,
                p.max_epochs,
                p.train_loss,
                p.validation_loss
            );
            let _ = err.flush();
        } else {
            tracing::info!(
                model = %self.label,
                epoch = p.epoch,
                max_epochs = p.max_epochs,
                train_loss = p.train_loss,
                validation_loss = p.validation_loss,
                "training"
            );
        }
    }

    /// Ends the bar's line on a terminal (early stopping may end training before the last epoch).
    pub fn finish(&self) {
        if self.terminal {
            eprintln!();
        }
    }
}
