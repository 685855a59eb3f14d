-- Where a restarted or newly assigned instance must start reading to rebuild the state stored
-- beside the offsets (NULL: at next_offset).
ALTER TABLE stream_offsets ADD COLUMN replay_from BIGINT;

-- The detector's state per source partition (each host's window, adaptive errors and open event),
-- written in the same transaction as the offsets: every record below state_offset is in it.
CREATE TABLE stream_state (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    state_offset BIGINT NOT NULL,
    state BYTEA NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
);
