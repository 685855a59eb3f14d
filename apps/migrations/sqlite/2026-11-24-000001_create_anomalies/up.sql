-- The embedded store of `anomaly demo` and single-machine setups; mirrors migrations/postgres.
CREATE TABLE anomalies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host TEXT NOT NULL,
    window_start TEXT NOT NULL,
    window_end TEXT NOT NULL,
    score DOUBLE NOT NULL,
    threshold DOUBLE NOT NULL,
    severity TEXT NOT NULL,
    top_metrics TEXT NOT NULL,
    model_version TEXT NOT NULL,
    detected_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (host, window_start, model_version)
);
CREATE INDEX anomalies_host_window_end ON anomalies (host, window_end);
CREATE INDEX anomalies_window_end ON anomalies (window_end);
