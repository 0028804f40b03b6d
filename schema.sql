-- Neurite's global tables in D1. The source of truth for their shape.
-- Every statement is idempotent: this file is applied on every start.

CREATE TABLE IF NOT EXISTS schema_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO schema_info (key, value) VALUES ('version', '1');
