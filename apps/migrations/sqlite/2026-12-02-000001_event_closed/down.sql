ALTER TABLE anomalies DROP COLUMN closed;
