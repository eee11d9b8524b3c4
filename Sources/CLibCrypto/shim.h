#ifndef DECRYPTD_CLIBCRYPTO_SHIM_H
#define DECRYPTD_CLIBCRYPTO_SHIM_H
// OpenSSL libcrypto (Debian: libssl-dev). Only the EVP cipher API is used.
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#endif
