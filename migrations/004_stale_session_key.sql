-- Telling stale keys apart (SPEC "Telling stale keys apart"): a job about to fail bad_padding is
-- checked with WeChat's checksession; when WeChat says the newest stored key is no longer the
-- user's, it fails stale_session_key instead (the login service missed a newer key).

ALTER TABLE decrypt_failures DROP CONSTRAINT decrypt_failures_reason_check;
ALTER TABLE decrypt_failures ADD CONSTRAINT decrypt_failures_reason_check CHECK (reason IN (
    'malformed_job', 'session_not_found', 'invalid_session_key', 'invalid_iv',
    'invalid_ciphertext', 'bad_padding', 'invalid_plaintext', 'appid_mismatch',
    'code_invalid', 'code_expired', 'invalid_phone_info', 'exchange_not_configured', 'wechat_error',
    'stale_session_key'));
