-- The audit chain (relay/src/audit/pg.rs): the records sled keeps in its
-- `audit` tree, one row each, with the same fields and hashes, so
-- `audit verify` is unchanged and a chain copied from sled gives the same tip.
CREATE TABLE audit_events (
    -- Its place in the chain, contiguous from 1 (from the anchor's + 1 once
    -- retention has dropped older ones).
    seq bigint PRIMARY KEY,
    -- Unix time in milliseconds.
    at_ms bigint NOT NULL,
    -- Hex SHA-256 of the record before (64 zeros for the first).
    prev text NOT NULL,
    -- Hex SHA-256 over prev, seq, at_ms and event.
    hash text NOT NULL,
    -- The event exactly as hashed: serde_json's canonical text (object keys
    -- sorted). Not jsonb, which would reorder keys and renormalize numbers.
    event text NOT NULL,
    -- The appending relay's random id for it (32 hex digits), so a retry
    -- after an unclear commit can tell whether it was stored. Not hashed;
    -- NULL for records copied from a sled store.
    event_id text UNIQUE
);

-- The chain's head, one row: where the next record goes, and the anchor
-- retention left (the last dropped record, which the first kept one
-- chains to). Every writer locks it (SELECT ... FOR UPDATE), so the relays
-- of a cluster append one transaction at a time.
CREATE TABLE audit_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    last_seq bigint NOT NULL,
    last_hash text NOT NULL,
    anchor_seq bigint,
    anchor_hash text,
    CHECK ((anchor_seq IS NULL) = (anchor_hash IS NULL))
);
INSERT INTO audit_head (last_seq, last_hash)
    VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');

-- Each client event (session id, its seq) is stored once, however often and
-- through however many relays it is sent. seq is the client's u64 stored
-- with the same 64 bits as a bigint.
CREATE TABLE audit_client_keys (
    session text NOT NULL,
    seq bigint NOT NULL,
    audit_seq bigint NOT NULL,
    PRIMARY KEY (session, seq)
);
-- Retention drops a record's key with it.
CREATE INDEX audit_client_keys_by_audit_seq ON audit_client_keys (audit_seq);

-- A client session id's owner and budgets: relay/src/audit/budget.rs's
-- ClientSessionRecord as JSON, as sled keeps it. Written under the head lock.
CREATE TABLE audit_client_sessions (
    session text PRIMARY KEY,
    record text NOT NULL
);
