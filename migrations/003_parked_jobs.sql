-- Waiting for a session key (SPEC "Waiting for a session key"): jobs that failed only because the
-- key that encrypted them was not stored yet wait here, and are tried again when a newer key lands.

-- One row per waiting job: the job's own bytes (ciphertext only: never a plaintext, a number or a
-- key), where it came from, why it waits, and the newest key it was tried with.
CREATE TABLE parked_jobs (
    source_topic     text COLLATE "C" NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    source_timestamp bigint,                 -- ms since the epoch; NULL when the broker gave none
    appid            text COLLATE "C" NOT NULL,
    openid           text COLLATE "C" NOT NULL,
    reason           text        NOT NULL,  -- the reason it last failed with
    detail           text        NOT NULL DEFAULT '',
    tried_issued_at  timestamptz,           -- the newest key it was tried with; NULL: no key yet
    attempts         integer     NOT NULL DEFAULT 1,
    parked_at        timestamptz NOT NULL DEFAULT now(),
    deadline         timestamptz NOT NULL,
    job_key          bytea,
    job_value        bytea       NOT NULL,
    job_headers      bytea       NOT NULL,  -- the job's headers, packed (see ParkedJobRecord)
    PRIMARY KEY (source_topic, source_partition, source_offset),
    CONSTRAINT parked_jobs_reason_check CHECK (reason IN ('session_not_found', 'bad_padding'))
);
-- A stored key finds its user's waiting jobs; the expiry sweep finds the jobs that are due.
CREATE INDEX parked_jobs_user_idx ON parked_jobs (appid, openid);
CREATE INDEX parked_jobs_deadline_idx ON parked_jobs (deadline);

-- How each waiting job ended, for `decryptd report` (healed jobs and their waits). Rows older than
-- the report's longest window are the operator's to delete; a job ends once, so its coordinates
-- are unique here too.
CREATE TABLE parked_job_endings (
    source_topic     text COLLATE "C" NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    appid            text COLLATE "C" NOT NULL,
    reason           text        NOT NULL,  -- the reason it waited with last
    healed           boolean     NOT NULL,  -- true: a member row; false: a failure row (expired)
    waited_ms        bigint      NOT NULL,
    ended_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_topic, source_partition, source_offset)
);
CREATE INDEX parked_job_endings_ended_at_idx ON parked_job_endings (ended_at);

-- How the worker hears of new keys without looking at every waiting job: the login service's INSERT
-- into wechat_sessions (all it ever does) now also sends a notification naming the user, which a
-- worker that listens turns into a retry of that user's waiting jobs. The cost per stored key is one
-- NOTIFY (queued with the transaction, sent at its commit); nothing is written and no table is read.
-- The payload is the appid's length in characters, ':', the appid, then the openid; when it would
-- not fit in a notification (over 8000 bytes) it is empty, which a worker takes as "look at every
-- user". CREATE OR REPLACE and DROP ... IF EXISTS make this safe to run again.
CREATE OR REPLACE FUNCTION decryptd_session_key_stored() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(NEW.appid) + octet_length(NEW.openid) < 4000 THEN
        PERFORM pg_notify('decryptd_session_keys', length(NEW.appid) || ':' || NEW.appid || NEW.openid);
    ELSE
        PERFORM pg_notify('decryptd_session_keys', '');
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS decryptd_session_key_stored ON wechat_sessions;
CREATE TRIGGER decryptd_session_key_stored AFTER INSERT OR UPDATE OF session_key, issued_at ON wechat_sessions
    FOR EACH ROW EXECUTE FUNCTION decryptd_session_key_stored();
