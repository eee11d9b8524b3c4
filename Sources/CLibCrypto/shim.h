#ifndef DECRYPTD_CLIBCRYPTO_SHIM_H
#define DECRYPTD_CLIBCRYPTO_SHIM_H
// OpenSSL libcrypto (Debian: libssl-dev): the EVP cipher, digest and public-key APIs, and the PEM
// and X.509 readers (API security mode's keys and certificates).
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/bio.h>
#include <openssl/hmac.h>
#endif
