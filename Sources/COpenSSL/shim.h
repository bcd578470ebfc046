// Debian's OpenSSL 3 (libssl-dev): HMAC-SHA256, random bytes and constant-time comparison for the handshake's
// challenge-response (libcrypto), and TLS over a connected socket (libssl). Only PSSecurity imports it.
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// Function-like macros Swift cannot import, as functions.
static inline int psssl_set_min_tls12(SSL_CTX *ctx) { return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION); }
static inline int psssl_set_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }
static inline uint64_t psssl_ignore_unexpected_eof(SSL_CTX *ctx) {
    return SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
}
static inline int psssl_filetype_pem(void) { return SSL_FILETYPE_PEM; }
// Read ahead into a 256 KiB buffer: one recv brings several records (tensor frames are large).
static inline void psssl_read_ahead(SSL_CTX *ctx) {
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 256 * 1024);
}

// For benchmarks: a fresh P-256 key and a self-signed certificate (CN=localhost, SAN IP:127.0.0.1 and localhost,
// valid one day) that `server` serves and `client` trusts. Returns 1 on success.
static inline int psssl_self_signed_pair(SSL_CTX *server, SSL_CTX *client) {
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    X509_EXTENSION *names = NULL;
    int ok = 0;
    EVP_PKEY_CTX *keygen = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (keygen == NULL || EVP_PKEY_keygen_init(keygen) != 1 || EVP_PKEY_CTX_set_group_name(keygen, "P-256") != 1
        || EVP_PKEY_generate(keygen, &key) != 1)
        goto done;
    cert = X509_new();
    if (cert == NULL || X509_set_version(cert, 2) != 1 || ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) != 1
        || X509_gmtime_adj(X509_getm_notBefore(cert), 0) == NULL
        || X509_gmtime_adj(X509_getm_notAfter(cert), 86400) == NULL || X509_set_pubkey(cert, key) != 1)
        goto done;
    X509_NAME *name = X509_get_subject_name(cert);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0) != 1
        || X509_set_issuer_name(cert, name) != 1)
        goto done;
    names = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    if (names == NULL || X509_add_ext(cert, names, -1) != 1 || X509_sign(cert, key, EVP_sha256()) == 0) goto done;
    ok = SSL_CTX_use_certificate(server, cert) == 1 && SSL_CTX_use_PrivateKey(server, key) == 1
        && X509_STORE_add_cert(SSL_CTX_get_cert_store(client), cert) == 1;
done:
    X509_EXTENSION_free(names);
    EVP_PKEY_CTX_free(keygen);
    X509_free(cert);
    EVP_PKEY_free(key);
    return ok;
}

// Initialises libssl and libcrypto without their atexit cleanup: SwiftPS processes exit while connection threads
// may still hold TLS sessions, and a cleanup at exit would free what those threads then free again.
static inline int psssl_init(void) {
    return OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_SSL_STRINGS, NULL)
        && OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT | OPENSSL_INIT_LOAD_CRYPTO_STRINGS, NULL);
}
