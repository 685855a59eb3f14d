-- Anomaly events found by the detector, one row per event.
CREATE TABLE anomalies (
    id BIGSERIAL PRIMARY KEY,
    host TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    threshold DOUBLE PRECISION NOT NULL,
    severity TEXT NOT NULL,
    -- [{"metric": "cpu_busy", "share": 0.71}, ...], largest share first.
    top_metrics JSONB NOT NULL,
    model_version TEXT NOT NULL,
    detected_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A replay of the same input must never duplicate an event.
    CONSTRAINT anomalies_event_key UNIQUE (host, window_start, model_version)
);
CREATE INDEX anomalies_host_window_end ON anomalies (host, window_end);
CREATE INDEX anomalies_window_end ON anomalies (window_end);

-- Source offsets committed in the same transaction as the rows they produced (exactly-once sink).
CREATE TABLE stream_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
);
