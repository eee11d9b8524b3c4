#ifndef DECRYPTD_CLIBPQ_SHIM_H
#define DECRYPTD_CLIBPQ_SHIM_H
// libpq (Debian: libpq-dev); pkg-config adds -I/usr/include/postgresql.
#include <libpq-fe.h>
#endif
