-- Code jobs (SPEC "Code jobs"): the new failure reasons, each failure's job kind, and the ledger of
-- exchanged codes that keeps a redelivered code job from being exchanged twice.

ALTER TABLE decrypt_failures DROP CONSTRAINT decrypt_failures_reason_check;
ALTER TABLE decrypt_failures ADD CONSTRAINT decrypt_failures_reason_check CHECK (reason IN (
    'malformed_job', 'session_not_found', 'invalid_session_key', 'invalid_iv',
    'invalid_ciphertext', 'bad_padding', 'invalid_plaintext', 'appid_mismatch',
    'code_invalid', 'code_expired', 'invalid_phone_info', 'exchange_not_configured', 'wechat_error'));

-- 'encrypted' or 'code'; NULL when the value was too malformed to tell (and for rows from before).
ALTER TABLE decrypt_failures ADD COLUMN job_kind text
    CONSTRAINT decrypt_failures_job_kind_check CHECK (job_kind IN ('encrypted', 'code'));

-- One row per code WeChat answered for, keyed by the code's SHA-256 (never the code itself), written
-- in the same transaction as the job's member or failure row. `outcome` is 'ok' or the failure
-- reason, so that a redelivered job whose dead letter was not yet acknowledged is dead-lettered again
-- without asking WeChat. Rows older than --exchange-ledger-retention are deleted by the worker.
CREATE TABLE phone_code_exchanges (
    code_sha256  bytea       PRIMARY KEY CONSTRAINT phone_code_exchanges_digest_check CHECK (octet_length(code_sha256) = 32),
    appid        text COLLATE "C" NOT NULL,
    openid       text COLLATE "C" NOT NULL,
    outcome      text        NOT NULL,
    detail       text        NOT NULL DEFAULT '',
    exchanged_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_code_exchanges_exchanged_at_idx ON phone_code_exchanges (exchanged_at);
