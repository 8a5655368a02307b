-- Cluster identity and secrets (relay/src/cluster.rs).

-- The secrets every relay of the cluster shares: the tunnel CA (cert and
-- key) and the SSH CAs. `sealed` is AES-256-GCM under the cluster key
-- (version byte, 96-bit nonce, ciphertext and tag), with `name` as the
-- associated data. Written once (INSERT ... ON CONFLICT DO NOTHING), never
-- changed.
CREATE TABLE cluster_secrets (
    name text PRIMARY KEY,
    sealed bytea NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
);

-- The relays of the cluster. `epoch` goes up by one each time a process
-- starts with this id; a process whose epoch is no longer the row's has
-- been fenced and stops. A relay whose `lease_until` has passed is not live.
CREATE TABLE relays (
    id text PRIMARY KEY,
    epoch bigint NOT NULL,
    tunnel_addr text NOT NULL,
    public_url text NOT NULL,
    lease_until timestamptz NOT NULL,
    started timestamptz NOT NULL
);
