DROP TABLE stream_state;
DROP TABLE stream_offsets;
