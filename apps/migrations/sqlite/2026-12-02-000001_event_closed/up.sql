-- Mirrors migrations/postgres: whether the event has ended.
ALTER TABLE anomalies ADD COLUMN closed BOOLEAN NOT NULL DEFAULT 0;
