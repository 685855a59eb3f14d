DROP TABLE stream_state;
ALTER TABLE stream_offsets DROP COLUMN replay_from;
