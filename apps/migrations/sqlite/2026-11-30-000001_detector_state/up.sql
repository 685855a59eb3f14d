-- Source offsets and detector state stored in the same transaction as the events; mirrors
-- migrations/postgres (whose stream_offsets table came with the first migration).
CREATE TABLE stream_offsets (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    next_offset BIGINT NOT NULL,
    replay_from BIGINT,
    PRIMARY KEY (consumer_group, topic, partition_id)
);

CREATE TABLE stream_state (
    consumer_group TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition_id INTEGER NOT NULL,
    state_offset BIGINT NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (consumer_group, topic, partition_id)
);
