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

-- Guest accounts (`register?kind=guest`): limited to the guest API until upgraded
-- to a full account (the row is then deleted).
CREATE TABLE IF NOT EXISTS guests (
    user_id TEXT PRIMARY KEY
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

-- End-to-end encryption (issue 7). The server stores and relays keys; it never sees
-- plaintext. Key objects are stored as the JSON the client uploaded; signatures added
-- later through /keys/signatures/upload live in e2e_signatures and are merged on query.
CREATE TABLE IF NOT EXISTS e2e_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    ed25519   TEXT NOT NULL,               -- the device's ed25519 key, for signature checks
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE IF NOT EXISTS e2e_one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm; `used` once it has been claimed.
CREATE TABLE IF NOT EXISTS e2e_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- kind: 'master' | 'self_signing' | 'user_signing'; public_key is the unpadded base64.
CREATE TABLE IF NOT EXISTS e2e_cross_signing_keys (
    user_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    PRIMARY KEY (user_id, kind)
);

-- target_key_id: a device id, or the public key of a cross-signing key.
CREATE TABLE IF NOT EXISTS e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,              -- 'ed25519:<device id or public key>'
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- Device-list changes, fanned out on write to every local user who should hear of
-- them (the user themself and everyone sharing a room). One row per (observer, other
-- user): the latest change wins. stream_id increases per observer, so sync reads
-- "changed since N" with one range scan of device_list_inbox_by_stream.
-- kind: 'changed' | 'left'.
CREATE TABLE IF NOT EXISTS device_list_inbox (
    user_id       TEXT NOT NULL,
    other_user_id TEXT NOT NULL,
    stream_id     INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    PRIMARY KEY (user_id, other_user_id)
);
CREATE INDEX IF NOT EXISTS device_list_inbox_by_stream ON device_list_inbox (user_id, stream_id);

-- Other servers' users' device and cross-signing keys, as their servers last answered
-- `/user/keys/query` (`keys`: {device_keys, master_key, self_signing_key} of one
-- user), kept only for users who share a room with a local user (their server tells
-- this one of changes). A device-list or signing-key update empties the row
-- (`keys` NULL) and stamps `invalidated_ts`; an answer fetched before that stamp is
-- not kept.
CREATE TABLE IF NOT EXISTS remote_device_keys (
    user_id        TEXT PRIMARY KEY,
    keys           TEXT,
    fetched_ts     INTEGER NOT NULL DEFAULT 0,
    invalidated_ts INTEGER NOT NULL DEFAULT 0
);

-- The latest presence of each local user who has set one, written only when it
-- changes (each user's Durable Object holds their own): what a user who newly shares a
-- room with them is told.
CREATE TABLE IF NOT EXISTS presence (
    user_id TEXT PRIMARY KEY,
    serial  INTEGER NOT NULL,
    content TEXT NOT NULL
);

-- Rooms: every member's membership (local users and other servers' users), projected
-- from the room-log (and written directly by the edge after a local membership change,
-- so a client reads its own writes). Keyed on the room's stream position so replays
-- and reordering never go backwards. Questions about local users join `users`.
CREATE TABLE IF NOT EXISTS room_memberships (
    room_id    TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    stream_pos INTEGER NOT NULL,
    forgotten  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX IF NOT EXISTS room_memberships_user ON room_memberships (user_id, membership);

-- Room aliases (#alias:server → room id).
CREATE TABLE IF NOT EXISTS room_aliases (
    alias      TEXT PRIMARY KEY,
    room_id    TEXT NOT NULL,
    creator    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS room_aliases_room ON room_aliases (room_id);

-- The public room directory.
CREATE TABLE IF NOT EXISTS public_rooms (
    room_id    TEXT PRIMARY KEY,
    added_ts   INTEGER NOT NULL
);

-- Server-side key backup. Versions are never reused (a deleted one keeps its row).
CREATE TABLE IF NOT EXISTS backup_versions (
    user_id   TEXT NOT NULL,
    version   INTEGER NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      INTEGER NOT NULL DEFAULT 0,
    deleted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

CREATE TABLE IF NOT EXISTS backup_keys (
    user_id             TEXT NOT NULL,
    version             INTEGER NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index INTEGER NOT NULL,
    forwarded_count     INTEGER NOT NULL,
    is_verified         INTEGER NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);

-- Other servers' signing keys, as last fetched (directly or through a notary).
-- `valid_until_ts` is the response's (capped at 7 days after the fetch) for current
-- keys, `expired_ts` for old ones (`old` = 1).
CREATE TABLE IF NOT EXISTS server_keys (
    server_name    TEXT NOT NULL,
    key_id         TEXT NOT NULL,
    public_key     TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    old            INTEGER NOT NULL DEFAULT 0,
    fetched_ts     INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
-- The newest signed key response of each server, kept whole: what this server
-- answers as a notary (`/_matrix/key/v2/query`).
CREATE TABLE IF NOT EXISTS server_key_responses (
    server_name    TEXT PRIMARY KEY,
    response       TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    fetched_ts     INTEGER NOT NULL
);
-- Received federation transactions, by origin and transaction id: a repeat is
-- answered with the first answer and processed again never.
CREATE TABLE IF NOT EXISTS federation_txns (
    origin     TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    response   TEXT NOT NULL,
    ts         INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
-- How other servers were reached: the result of the well-known and SRV lookups,
-- until `expires_ts`.
CREATE TABLE IF NOT EXISTS server_resolutions (
    server_name TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    host_header TEXT NOT NULL,
    expires_ts  INTEGER NOT NULL
);
-- OpenID tokens (`/user/{userId}/openid/request_token`): what other services hand
-- back to `/_matrix/federation/v1/openid/userinfo` to learn who the user is. Hashed.
CREATE TABLE IF NOT EXISTS openid_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    expires_ts INTEGER NOT NULL
);
-- Which room an event is in, for `/_matrix/federation/v1/event/{eventId}` (the only
-- question that names no room): projected from the room-log, so the room's new
-- events (not its outliers or backfilled history).
CREATE TABLE IF NOT EXISTS event_rooms (
    event_id TEXT PRIMARY KEY,
    room_id  TEXT NOT NULL
);
-- Media (the content repository). One row per mxc:// URI this server holds: its own
-- uploads (`owner` set) and other servers' media cached here (`owner` NULL). The bytes
-- are in R2 (the `MEDIA` bucket) under `<origin>/<media_id>`. `state`: `pending` (an
-- async upload created, no bytes yet, until `expires_ts`), `uploading` (bytes on their
-- way since `uploaded_ts`), `ready`. `created_ts` is when the row was made (for cached
-- media, when it was cached): the legacy download freeze compares it.
CREATE TABLE IF NOT EXISTS media (
    origin       TEXT NOT NULL,
    media_id     TEXT NOT NULL,
    owner        TEXT,
    state        TEXT NOT NULL,
    content_type TEXT,
    filename     TEXT,
    size         INTEGER,
    created_ts   INTEGER NOT NULL,
    uploaded_ts  INTEGER,
    expires_ts   INTEGER,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX IF NOT EXISTS media_by_owner ON media (owner, state);

-- Reports of events, rooms and users (`/rooms/{roomId}/report[/{eventId}]`,
-- `/users/{userId}/report`), kept for the server's admins, who list them through
-- `/_synapse/admin/v1/event_reports` (events) and `/_neurite/admin/v1/reports` (all).
-- kind: 'event' | 'room' | 'user'. `event_json`: the reported event as the reporter
-- could see it (client format), for an event report.
CREATE TABLE IF NOT EXISTS reports (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL,
    received_ts    INTEGER NOT NULL,
    reporter       TEXT NOT NULL,
    room_id        TEXT,
    event_id       TEXT,
    target_user_id TEXT,
    reason         TEXT,
    score          INTEGER,
    event_json     TEXT
);
CREATE INDEX IF NOT EXISTS reports_by_kind ON reports (kind, id);

-- Rooms whose users every searcher of the user directory sees: join rule `public` or
-- history visibility `world_readable` (`open`), as the room answered when the log
-- consumer last saw one of those change (`stream_pos`: only newer answers replace it).
CREATE TABLE IF NOT EXISTS room_openness (
    room_id    TEXT PRIMARY KEY,
    open       INTEGER NOT NULL,
    stream_pos INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS room_openness_open ON room_openness (open);
