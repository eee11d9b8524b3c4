#ifndef DECRYPTD_CRDKAFKA_SHIM_H
#define DECRYPTD_CRDKAFKA_SHIM_H
// librdkafka (Debian: librdkafka-dev 2.0.2), including the mock cluster API.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#endif
