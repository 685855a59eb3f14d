-- Whether the event has ended (its hosts' scores settled); `anomaly events --open` lists the others.
ALTER TABLE anomalies ADD COLUMN closed BOOLEAN NOT NULL DEFAULT FALSE;
