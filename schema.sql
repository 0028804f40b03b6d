-- Neurite's global tables in D1. The source of truth for their shape.
-- Every statement is idempotent: this file is applied on every start.

CREATE TABLE IF NOT EXISTS schema_info (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO schema_info (key, value) VALUES ('version', '1');

-- Accounts. A row is never deleted: deactivation sets `deactivated` and clears the
-- password hash ('' matches no password), so the id is never registered again.
CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL DEFAULT '',   -- $pbkdf2-sha256$<iterations>$<salt>$<hash>
    is_admin      INTEGER NOT NULL DEFAULT 0,
    deactivated   INTEGER NOT NULL DEFAULT 0,
    user_type     TEXT,
    created_ts    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS profiles (
    user_id     TEXT PRIMARY KEY,
    displayname TEXT,
    avatar_url  TEXT
);

CREATE TABLE IF NOT EXISTS devices (
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    display_name TEXT,
    last_seen_ts INTEGER,
    last_seen_ip TEXT,
    created_ts   INTEGER NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Access tokens, keyed by the hex SHA-256 of the token; the token itself is never stored.
CREATE TABLE IF NOT EXISTS access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    created_ts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS access_tokens_by_device ON access_tokens (user_id, device_id);

-- Account data; room_id is '' for global data. stream_id increases per user on every
-- write, so sync reads "changed since N" with one range scan of the index below.
CREATE TABLE IF NOT EXISTS account_data (
    user_id   TEXT NOT NULL,
    room_id   TEXT NOT NULL,
    type      TEXT NOT NULL,
    content   TEXT NOT NULL,
    stream_id INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, type)
);
CREATE INDEX IF NOT EXISTS account_data_by_stream ON account_data (user_id, stream_id);

CREATE TABLE IF NOT EXISTS registration_tokens (
    token        TEXT PRIMARY KEY,
    uses_allowed INTEGER,            -- NULL: unlimited
    pending      INTEGER NOT NULL DEFAULT 0,
    completed    INTEGER NOT NULL DEFAULT 0,
    expiry_time  INTEGER             -- ms since the epoch; NULL: never
);

-- Nonces for shared-secret registration (/_synapse/admin/v1/register), single use.
CREATE TABLE IF NOT EXISTS registration_nonces (
    nonce      TEXT PRIMARY KEY,
    created_ts INTEGER NOT NULL
);

-- Failed password checks per key ('user:<id>' or 'ip:<address>'), fixed windows.
CREATE TABLE IF NOT EXISTS login_failures (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    failures     INTEGER NOT NULL
);
