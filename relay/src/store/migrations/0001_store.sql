-- The relay's records (relay/src/store/mod.rs), one table per kind. Each
-- record is kept as the JSON the sled engine stores (`record`), so `store
-- migrate` copies it as it is; beside it, the key columns that lookups and
-- atomic updates need. Keys are the sled engine's keys.

-- Users, by name.
CREATE TABLE users (
    name text PRIMARY KEY,
    record jsonb NOT NULL
);

-- Sign-ins, by the SHA-256 (hex) of their bearer token; user and expiry
-- are copies of the record's (never changed in place).
CREATE TABLE sign_ins (
    id text PRIMARY KEY,
    user_name text NOT NULL,
    expires bigint NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX sign_ins_user_name ON sign_ins (user_name);
CREATE INDEX sign_ins_expires ON sign_ins (expires);

-- Enrolment tokens, by the SHA-256 (hex) of their secret; the connector
-- is a copy of the record's.
CREATE TABLE tokens (
    secret_sha256 text PRIMARY KEY,
    connector text NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX tokens_connector ON tokens (connector);

-- Connectors, by name.
CREATE TABLE connectors (
    name text PRIMARY KEY,
    record jsonb NOT NULL
);

-- Client certificate SHA-256 (hex) -> the connector it was issued to.
CREATE TABLE connector_certs (
    cert_sha256 text PRIMARY KEY,
    connector text NOT NULL
);

-- The last TOTP time step each user used.
CREATE TABLE totp_used (
    user_name text PRIMARY KEY,
    step bigint NOT NULL
);

-- Each user's recent failed sign-ins (a JSON array, newest last).
CREATE TABLE sign_in_failures (
    user_name text PRIMARY KEY,
    list jsonb NOT NULL
);

-- When a user first reached a service with a network ("net:...") or a
-- device ("dev:..."), unix seconds.
CREATE TABLE known (
    user_name text NOT NULL,
    what text NOT NULL,
    first_use bigint NOT NULL,
    PRIMARY KEY (user_name, what)
);

-- Device certificates the relay issued, by device name.
CREATE TABLE devices (
    name text PRIMARY KEY,
    record jsonb NOT NULL
);

-- Certificate SHA-256 (hex) -> device name.
CREATE TABLE device_certs (
    cert_sha256 text PRIMARY KEY,
    device text NOT NULL
);

-- Settings the relay keeps for the CLI (`META_*`).
CREATE TABLE meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
