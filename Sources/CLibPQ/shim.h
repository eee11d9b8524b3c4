#ifndef DECRYPTD_CLIBPQ_SHIM_H
#define DECRYPTD_CLIBPQ_SHIM_H
// libpq (Debian: libpq-dev); pkg-config adds -I/usr/include/postgresql.
#include <libpq-fe.h>
#include <postgres_ext.h>

// PG_DIAG_* are character-literal macros, which Swift does not import.
static inline int CLibPQ_DIAG_SQLSTATE(void) { return PG_DIAG_SQLSTATE; }
static inline int CLibPQ_DIAG_MESSAGE_PRIMARY(void) { return PG_DIAG_MESSAGE_PRIMARY; }

// A notice processor that drops notices (NOTICE/WARNING from the server would otherwise go to stderr).
static void CLibPQ_ignoreNotice(void *arg, const char *message) { (void)arg; (void)message; }
static inline void CLibPQ_silenceNotices(PGconn *conn) { PQsetNoticeProcessor(conn, CLibPQ_ignoreNotice, 0); }
#endif
