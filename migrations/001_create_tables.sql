-- The tables SPEC.md names. wechat_sessions belongs to the login service; it is created here only
-- when missing, so a fresh deployment (and the demo) works and an existing one is left alone.
--
-- appid, openid and topic names are opaque identifiers: they use the "C" collation, so keys compare
-- byte for byte (memcmp) instead of through the cluster's linguistic collation (strcoll), which
-- made batched lookups and upserts several times slower.

CREATE TABLE IF NOT EXISTS wechat_sessions (
    appid       text COLLATE "C"        NOT NULL,
    openid      text COLLATE "C"        NOT NULL,
    session_key text        NOT NULL,  -- base64, as code2Session returned it
    issued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appid, openid, issued_at)  -- also serves "newest keys first" lookups (backward scan)
);

CREATE TABLE members (
    appid             text COLLATE "C"        NOT NULL,
    openid            text COLLATE "C"        NOT NULL,
    phone_number      text        NOT NULL,
    pure_phone_number text        NOT NULL,
    country_code      text        NOT NULL,
    watermark_ts      bigint      NOT NULL,
    decrypted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (appid, openid)
);

CREATE TABLE decrypt_failures (
    id               bigserial   PRIMARY KEY,
    appid            text COLLATE "C",       -- NULL when the job was too malformed to name one
    openid           text COLLATE "C",
    reason           text        NOT NULL,
    detail           text        NOT NULL DEFAULT '',
    source_topic     text COLLATE "C" NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    failed_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    CONSTRAINT decrypt_failures_source_key UNIQUE (source_topic, source_partition, source_offset),
    CONSTRAINT decrypt_failures_reason_check CHECK (reason IN (
        'malformed_job', 'session_not_found', 'invalid_session_key', 'invalid_iv',
        'invalid_ciphertext', 'bad_padding', 'invalid_plaintext', 'appid_mismatch'))
);

-- Reports group recent failures by reason and hour.
CREATE INDEX decrypt_failures_failed_at_idx ON decrypt_failures (failed_at, reason);
-- Reprocessing and dashboards look at what is still unresolved.
CREATE INDEX decrypt_failures_unresolved_idx ON decrypt_failures (reason) WHERE resolved_at IS NULL;
