DROP TABLE stream_offsets;
DROP TABLE anomalies;
