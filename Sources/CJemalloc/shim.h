#ifndef DECRYPTD_CJEMALLOC_SHIM_H
#define DECRYPTD_CJEMALLOC_SHIM_H
// jemalloc (Debian: libjemalloc-dev 5.3). Linking it into the decryptd executable replaces
// malloc/free for the whole process (Swift runtime, librdkafka and libpq included); the module
// itself is only imported to read jemalloc's own version and statistics through mallctl().
#include <jemalloc/jemalloc.h>
#endif
