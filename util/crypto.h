/* Cryptography for certsync, the one owner of OpenSSL: keys, CSRs, signing, hashes, PEM. */
#ifndef CS_UTIL_CRYPTO_H
#define CS_UTIL_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum crypto_alg { CRYPTO_RSA, CRYPTO_ECDSA, CRYPTO__MAX };

struct crypto_key;  /* a private key (opaque) */
struct crypto_cert; /* an X.509 certificate (opaque) */

/* What certsync needs to know about a certificate. Strings owned by the struct. */
struct crypto_cert_info {
	char serial[130];     /* lowercase hex, no leading zeros */
	char fingerprint[65]; /* lowercase hex SHA-256 of the DER encoding */
	int64_t not_before;   /* unix seconds */
	int64_t not_after;
	char *subject_cn; /* NULL when absent */
	char *issuer_cn;  /* NULL when absent */
	char **dns_names; /* SAN dNSNames, in certificate order */
	size_t n_dns;
	char **others; /* the other SANs as "IP:<inet_ntop text>", "URI:<uri>", "email:<address>", in order */
	size_t n_others;
	int is_ca;
};

void crypto_cert_info_free(struct crypto_cert_info *info);

/*
 * Generates a key: RSA with size 2048/3072/4096, or ECDSA with size 256/384
 * (P-256/P-384). Other sizes are CS_EINVALID. Caller frees with crypto_key_free.
 */
int crypto_key_generate(enum crypto_alg alg, int size, struct crypto_key **out);

/* Parses a PEM private key (PKCS#8, PKCS#1 or SEC1). CS_EINVALID with a message naming `what`. */
int crypto_key_from_pem(const char *pem, size_t len, const char *what, struct crypto_key **out);

/* Writes the key as unencrypted PKCS#8 PEM. The caller must buf_wipe() out. */
int crypto_key_to_pem(const struct crypto_key *key, struct buf *out);

/* Algorithm and size (bits for RSA, curve bits for ECDSA) of a key. */
void crypto_key_describe(const struct crypto_key *key, enum crypto_alg *alg, int *size);

/* Frees and cleanses a key. NULL is a no-op. */
void crypto_key_free(struct crypto_key *key);

/*
 * Creates a PEM CSR signed by key (SHA-256), subject CN = cn, with a
 * subjectAltName extension holding every name in sans (DNS names).
 */
int crypto_csr_create(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		      struct buf *pem_out);

/*
 * Signs a CSR as a CA would: verifies the CSR's own signature, copies its
 * subject CN and SAN extension, sets a random 128-bit serial, validity
 * [not_before, not_after], keyUsage/extendedKeyUsage for a TLS server, AKI/SKI.
 * CS_EINVALID if the CSR is malformed or its signature is wrong.
 */
int crypto_sign_csr(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key, const char *csr_pem,
		    size_t csr_len, int64_t not_before, int64_t not_after, struct crypto_cert **out);

/* Creates a self-signed CA certificate (basicConstraints CA:TRUE, keyCertSign) for key. */
int crypto_ca_create(const struct crypto_key *key, const char *cn, int64_t not_before, int64_t not_after,
		     struct crypto_cert **out);

/* Creates a self-signed leaf certificate for key with cn and sans (the `selfSigned` issuer mode). */
int crypto_self_signed(const struct crypto_key *key, const char *cn, const char *const *sans, size_t n_sans,
		       int64_t not_before, int64_t not_after, struct crypto_cert **out);

/* What crypto_issue puts in a certificate. Lists may be empty; strings are borrowed. */
struct crypto_profile {
	const char *cn; /* NULL: none */
	const char *const *dns;
	size_t n_dns;
	const char *const *ips; /* textual IPv4/IPv6 */
	size_t n_ips;
	const char *const *uris;
	size_t n_uris;
	const char *const *emails;
	size_t n_emails;
	const char *const *subject_attrs; /* OpenSSL short names: "C", "ST", "L", "street", "postalCode", "O", ... */
	const char *const *subject_values;
	size_t n_subject;
	const char *key_usage;	   /* OpenSSL syntax ("critical,digitalSignature"); NULL: TLS default; "": none */
	const char *ext_key_usage; /* "serverAuth,clientAuth"; NULL: that (none for a CA); "": none */
	int is_ca;
	int path_len; /* with is_ca: -1 = no limit */
};

/*
 * Issues a certificate for key's public key from a profile: signed by
 * ca_cert/ca_key, or self-signed when ca_cert is NULL. Random 128-bit
 * serial, validity [not_before, not_after], SKI/AKI, SAN critical when the
 * subject is empty. CS_EINVALID for a profile OpenSSL refuses (an IP that
 * does not parse, a subject value too long), naming it.
 */
int crypto_issue(const struct crypto_cert *ca_cert, const struct crypto_key *ca_key, const struct crypto_key *key,
		 const struct crypto_profile *p, int64_t not_before, int64_t not_after, struct crypto_cert **out);

/* Parses the first certificate of a PEM text. CS_EINVALID naming `what` if there is none. */
int crypto_cert_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert **out);

/* Parses every certificate of a PEM text (in order). *out is an array the caller frees with crypto_certs_free. */
int crypto_certs_from_pem(const char *pem, size_t len, const char *what, struct crypto_cert ***out, size_t *n);
void crypto_certs_free(struct crypto_cert **v, size_t n);

/*
 * Splits a PEM chain (leaf first, as CAs send it) into cert (the leaf and
 * intermediates: tls.crt) and ca (the self-signed roots at its end, or the
 * top of the chain when it has none: ca.crt). what names it in errors.
 */
int crypto_split_chain(const char *pem, size_t len, const char *what, struct buf *cert, struct buf *ca);

/* Appends the certificate as PEM (ending in a newline) to out. */
int crypto_cert_to_pem(const struct crypto_cert *cert, struct buf *out);

int crypto_cert_info(const struct crypto_cert *cert, struct crypto_cert_info *out);

/* 1 if cert's public key is key's public key, else 0. */
int crypto_cert_matches_key(const struct crypto_cert *cert, const struct crypto_key *key);

/* 1 if cert was signed by issuer's key (signature check only), else 0. */
int crypto_cert_signed_by(const struct crypto_cert *cert, const struct crypto_cert *issuer);

void crypto_cert_free(struct crypto_cert *cert);

/*
 * Verifies a certificate bundle with OpenSSL's verifier (crypto_verify.c):
 * the first certificate of chain_pem (the leaf) must chain, through the rest
 * of chain_pem as untrusted intermediates, to a trust anchor in ca_pem, valid
 * at unix time `at` (0: dates are not checked). An anchor that is an
 * intermediate ends the chain as a root does (partial chain). CS_EINVALID
 * with the verifier's reason, the depth and the subject of the failing
 * certificate.
 */
int crypto_cert_verify_chain(const char *chain_pem, size_t chain_len, const char *ca_pem, size_t ca_len, int64_t at);

/* 1 if name is in set (DNS comparison: ASCII case-insensitive, a trailing dot ignored), else 0. */
int crypto_names_contain(const char *const *set, size_t n, const char *name);

/* ---------- output formats (crypto_out.c) ---------- */

/* The first certificate of a PEM text as DER (appended to out). */
int crypto_out_cert_der(const char *pem, size_t len, struct buf *out);
/* A PEM private key as unencrypted PKCS#8 DER (appended to out; the caller must buf_wipe it). */
int crypto_out_key_der(const char *pem, size_t len, struct buf *out);
/* The certificates of a PEM bundle after the first (the leaf's intermediates) as PEM; none appends nothing. */
int crypto_out_intermediates(const char *pem, size_t len, struct buf *out);
/*
 * A PKCS#12 keystore (DER, appended to out; caller wipes): the key and the
 * leaf (first of chain_pem) under friendly, then the intermediates and
 * ca_pem's certificates; keys and certificates encrypted with PBES2
 * (PBKDF2 hmacWithSHA256, AES-256-CBC), a SHA-256 MAC, 10,000 iterations.
 */
int crypto_out_pkcs12(const char *key_pem, size_t key_len, const char *chain_pem, size_t chain_len, const char *ca_pem,
		      size_t ca_len, const char *password, const char *friendly, struct buf *out);

/* Hashes. Hex outputs are lowercase and NUL-terminated. */
void crypto_sha256(const void *data, size_t len, unsigned char out[32]);
void crypto_sha256_hex(const void *data, size_t len, char out[65]);

/* Incremental SHA-256 (for hashing several pieces without concatenating). */
struct crypto_sha256_ctx;
struct crypto_sha256_ctx *crypto_sha256_begin(void);
void crypto_sha256_update(struct crypto_sha256_ctx *c, const void *data, size_t len);
void crypto_sha256_end_hex(struct crypto_sha256_ctx *c, char out[65]); /* frees c */

void crypto_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[32]);
/* HMAC-SHA1: only where a format defines it (OpenSSH hashed known_hosts names). */
void crypto_hmac_sha1(const void *key, size_t key_len, const void *msg, size_t msg_len, unsigned char out[20]);

/* Fills out with n cryptographically random bytes. CS_ERROR if the RNG fails. */
int crypto_random(void *out, size_t n);

/* A random RFC 4122 version-4 UUID string (lineage, idempotency ids). */
int crypto_uuid(char out[37]);

/* Overwrites memory so the compiler cannot drop it (OPENSSL_cleanse). */
void crypto_wipe(void *p, size_t n);

#endif
