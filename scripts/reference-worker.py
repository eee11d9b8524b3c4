#!/usr/bin/env python3
"""The issue's yardstick, rebuilt: a batched Python worker (confluent-kafka + psycopg +
cryptography) doing decryptd's main job with the usual SDK checks, so that both can be measured in
the same minutes on a VM whose speed swings (scripts/bench-worker.sh runs it with REFERENCE=1).

Per batch of up to 1000 jobs: parse, one session lookup (newest key first, up to 3), decrypt
(AES-128-CBC, PKCS#7, JSON, watermark appid), one transaction for the members upsert (newest
watermark wins) and the failure rows, dead letters produced and flushed, then the offsets committed
synchronously. Not decryptd's strictness (no lenient base64, no strict JSON or UTF-8 checks) and no
overlap of stages: what a careful team writes in an afternoon.

Usage: reference-worker.py --brokers B --database-url URL --group G --appid A [--topic T --dlq-topic D]
Prints one line: jobs, jobs/s over the processing time, and the outcomes.
"""
import argparse
import base64
import binascii
import json
import sys
import time
from collections import Counter

import psycopg
from confluent_kafka import Consumer, KafkaError, Producer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

LOOKUP = """
    SELECT q.i, s.session_key
    FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS q(appid, openid, i)
    CROSS JOIN LATERAL (
        SELECT w.session_key, w.issued_at FROM wechat_sessions w
        WHERE w.appid = q.appid AND w.openid = q.openid
        ORDER BY w.issued_at DESC LIMIT 3) s
    ORDER BY q.i, s.issued_at DESC
"""
UPSERT = """
    INSERT INTO members AS m (appid, openid, phone_number, pure_phone_number, country_code, watermark_ts, decrypted_at)
    SELECT u.appid, u.openid, u.phone, u.pure, u.country, u.ts, now()
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[])
        AS u(appid, openid, phone, pure, country, ts)
    ON CONFLICT (appid, openid) DO UPDATE SET
        phone_number = EXCLUDED.phone_number, pure_phone_number = EXCLUDED.pure_phone_number,
        country_code = EXCLUDED.country_code, watermark_ts = EXCLUDED.watermark_ts,
        decrypted_at = EXCLUDED.decrypted_at
    WHERE m.watermark_ts <= EXCLUDED.watermark_ts
"""
FAILURES = """
    INSERT INTO decrypt_failures (appid, openid, reason, detail, source_topic, source_partition, source_offset)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::integer[], %s::bigint[])
    ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
"""


class Failure(Exception):
    def __init__(self, reason, detail):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def b64(text, reason, size=None):
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Failure(reason, "not base64")
    if size is not None and len(raw) != size:
        raise Failure(reason, "wrong length")
    return raw


def decrypt(appid, keys, iv_text, data_text):
    iv = b64(iv_text, "invalid_iv", 16)
    data = b64(data_text, "invalid_ciphertext")
    if not data or len(data) % 16:
        raise Failure("invalid_ciphertext", "not a multiple of 16 bytes")
    if not keys:
        raise Failure("session_not_found", "no session key")
    last = Failure("invalid_session_key", "no usable key")
    for key_text in keys:
        try:
            key = b64(key_text, "invalid_session_key", 16)
            decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
            plain = decryptor.update(data) + decryptor.finalize()
            pad = plain[-1]
            if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
                raise Failure("bad_padding", "padding check failed")
            try:
                payload = json.loads(plain[:-pad].decode("utf-8"))
                phone, pure = payload["phoneNumber"], payload["purePhoneNumber"]
                country, mark = payload["countryCode"], payload["watermark"]
                ts, mark_appid = int(mark["timestamp"]), mark["appid"]
            except (ValueError, KeyError, TypeError):
                raise Failure("invalid_plaintext", "not the expected JSON")
            if mark_appid != appid:
                raise Failure("appid_mismatch", "watermark appid differs")
            return phone, pure, str(country), ts
        except Failure as failure:
            last = failure
    raise last


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--appid", required=True)
    parser.add_argument("--topic", default="wechat.phone.jobs")
    parser.add_argument("--dlq-topic", default="wechat.phone.dlq")
    args = parser.parse_args()

    consumer = Consumer({
        "bootstrap.servers": args.brokers, "group.id": args.group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })
    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True, "linger.ms": 5})
    db = psycopg.connect(args.database_url, autocommit=True)
    consumer.subscribe([args.topic])

    outcomes = Counter()
    assigned_eof = set()
    started = None
    idle_polls = 0
    while True:
        messages = consumer.consume(num_messages=1000, timeout=1.0)
        jobs = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    assigned_eof.add((message.topic(), message.partition()))
                    continue
                raise SystemExit(f"reference-worker: {error}")
            assigned_eof.discard((message.topic(), message.partition()))
            jobs.append(message)
        if not jobs:
            assignment = consumer.assignment()
            idle_polls += 1
            if assignment and all((p.topic, p.partition) in assigned_eof for p in assignment):
                break
            if idle_polls > 120:
                raise SystemExit("reference-worker: no jobs for two minutes")
            continue
        idle_polls = 0
        if started is None:
            started = time.monotonic()

        parsed, users = [], {}
        for message in jobs:
            try:
                job = json.loads(message.value())
                openid, data, iv = job["openid"], job["encryptedData"], job["iv"]
                if not all(isinstance(v, str) for v in (openid, data, iv)):
                    raise TypeError
                appid = job.get("appid") or args.appid
                parsed.append((message, appid, openid, data, iv))
                users.setdefault((appid, openid), len(users) + 1)
            except (ValueError, KeyError, TypeError):
                parsed.append((message, None, None, None, None))
        keys = {}
        with db.cursor() as cursor:
            ordered = list(users)
            cursor.execute(LOOKUP, ([u[0] for u in ordered], [u[1] for u in ordered]), prepare=True)
            for index, key in cursor:
                keys.setdefault(ordered[index - 1], []).append(key)

        newest, failed = {}, []
        for message, appid, openid, data, iv in parsed:
            try:
                if appid is None:
                    raise Failure("malformed_job", "not a job")
                if appid != args.appid:
                    raise Failure("appid_mismatch", "appid not served")
                phone, pure, country, ts = decrypt(appid, keys.get((appid, openid), []), iv, data)
                current = newest.get((appid, openid))
                if current is None or current[3] <= ts:
                    newest[(appid, openid)] = (phone, pure, country, ts)
                outcomes["ok"] += 1
            except Failure as failure:
                outcomes[failure.reason] += 1
                failed.append((message, appid, openid, failure))

        members = sorted(newest.items())
        with db.transaction(), db.cursor() as cursor:
            cursor.execute(UPSERT, (
                [k[0] for k, _ in members], [k[1] for k, _ in members], [v[0] for _, v in members],
                [v[1] for _, v in members], [v[2] for _, v in members], [v[3] for _, v in members]),
                prepare=True)
            cursor.execute(FAILURES, (
                [f[1] for f in failed], [f[2] for f in failed], [f[3].reason for f in failed],
                [f[3].detail for f in failed], [f[0].topic() for f in failed],
                [f[0].partition() for f in failed], [f[0].offset() for f in failed]), prepare=True)
        failed_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for message, _, _, failure in failed:
            headers = list(message.headers() or []) + [
                ("decrypt.error.reason", failure.reason), ("decrypt.error.detail", failure.detail),
                ("decrypt.source.topic", message.topic()), ("decrypt.source.partition", str(message.partition())),
                ("decrypt.source.offset", str(message.offset())),
                ("decrypt.source.timestamp", str(message.timestamp()[1])), ("decrypt.attempts", "1"),
                ("decrypt.failed.at", failed_at), ("decrypt.consumer.group", args.group)]
            producer.produce(args.dlq_topic, key=message.key(), value=message.value(), headers=headers)
        if failed and producer.flush(30) != 0:
            raise SystemExit("reference-worker: dead letters not acknowledged")
        consumer.commit(asynchronous=False)

    elapsed = time.monotonic() - (started or time.monotonic())
    total = sum(outcomes.values())
    consumer.close()
    print(f"reference-worker: {total} jobs, {total / elapsed if elapsed else 0:.0f} jobs/s over {elapsed:.1f} s; "
          + ", ".join(f"{reason} {count}" for reason, count in outcomes.most_common()))


if __name__ == "__main__":
    sys.exit(main())
