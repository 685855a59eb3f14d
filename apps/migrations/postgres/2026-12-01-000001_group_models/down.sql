DROP TABLE model_current;
DROP TABLE model_versions;
