#ifndef DECRYPTD_CRDKAFKA_SHIM_H
#define DECRYPTD_CRDKAFKA_SHIM_H
// librdkafka (Debian: librdkafka-dev 2.0.2), including the mock cluster API.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

// rd_kafka_producev() is variadic, which Swift cannot call. This shim produces one message with a
// copied key and value, an optional header list and a creation timestamp.
// Ownership: on success librdkafka owns `headers` (and frees them); on failure the caller still
// owns them and must call rd_kafka_headers_destroy().
static inline rd_kafka_resp_err_t CRDKafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                                   const void *key, size_t key_len,
                                                   const void *value, size_t value_len,
                                                   rd_kafka_headers_t *headers, int64_t timestamp_ms, void *opaque) {
    // timestamp_ms 0: librdkafka stamps the message with the current time.
    if (headers) {
        return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
                                 RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(headers),
                                 RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    }
    return rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
                             RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_TIMESTAMP(timestamp_ms),
                             RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
}

// RD_KAFKA_PARTITION_UA is a macro.
static inline int32_t CRDKafka_partitionUnassigned(void) { return RD_KAFKA_PARTITION_UA; }
#endif
