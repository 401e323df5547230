/*
 * JOSE for ACME (RFC 7515/7517/7638, RFC 8555 §6.2, §7.3.4): the JWK of an
 * account key, its thumbprint, flattened JWS with ES256/ES384/RS256 signed
 * by OpenSSL, the HS256 external-account-binding JWS, key authorizations
 * and the dns-01 TXT value. Pure functions over util/crypto.h keys; no I/O.
 * Part of the crypto family (it may read util/crypto_int.h).
 */
#ifndef CS_UTIL_JOSE_H
#define CS_UTIL_JOSE_H

#include <stddef.h>

#include "buf.h"
#include "crypto.h"

/* base64url without padding of n bytes. Caller frees. */
char *jose_b64url(const void *data, size_t n);

/*
 * Decodes base64url (padding optional) into out. CS_EINVALID for anything
 * that is not base64url.
 */
int jose_b64url_decode(const char *s, struct buf *out);

/*
 * The public JWK of key as canonical JSON (members in lexicographic order,
 * no whitespace: exactly the RFC 7638 thumbprint input): EC
 * {"crv","kty","x","y"} with coordinates padded to the curve size, RSA
 * {"e","kty","n"}. Caller frees.
 */
char *jose_jwk(const struct crypto_key *key);

/* The RFC 7638 SHA-256 thumbprint of key's JWK, base64url (43 characters + NUL). */
int jose_thumbprint(const struct crypto_key *key, char out[44]);

/* "ES256" (P-256), "ES384" (P-384), "ES512" (P-521) or "RS256" (RSA). */
const char *jose_alg(const struct crypto_key *key);

/*
 * A flattened JWS (JSON: {"protected","payload","signature"}) of payload
 * under key. The protected header holds alg, nonce (if not NULL), url, and
 * kid when kid is not NULL, else the jwk. payload NULL or "" makes the
 * empty payload of a POST-as-GET. ECDSA signatures are the raw r‖s
 * (RFC 7518 §3.4), not DER. Caller frees. CS_ERROR (OpenSSL's reason) on
 * a signing failure.
 */
int jose_sign(const struct crypto_key *key, const char *kid, const char *nonce, const char *url, const char *payload,
	      char **out);

/*
 * The externalAccountBinding value of a newAccount payload (RFC 8555
 * §7.3.4): a JWS over the account key's JWK, protected header
 * {"alg":"HS256","kid":eab_kid,"url":url}, MAC'd with hmac_key (already
 * base64url-decoded). Returns the JSON text. Caller frees.
 */
char *jose_eab(const struct crypto_key *account_key, const char *eab_kid, const unsigned char *hmac_key,
	       size_t hmac_len, const char *url);

/* The key authorization token "." thumbprint (RFC 8555 §8.1). Caller frees. */
char *jose_key_authorization(const char *token, const char thumbprint[44]);

/* The dns-01 TXT value: base64url(SHA-256(key authorization)) (43 characters + NUL). */
void jose_dns01_value(const char *key_authorization, char out[44]);

/*
 * The DER bytes of the first PEM block labelled label ("CERTIFICATE",
 * "CERTIFICATE REQUEST") in pem: a CSR for finalize, a certificate for
 * revokeCert. CS_EINVALID when there is none.
 */
int jose_pem_to_der(const char *pem, size_t len, const char *label, struct buf *out);

/*
 * The RFC 9773 certificate identifier of the first certificate in pem:
 * base64url(authorityKeyIdentifier keyIdentifier) "." base64url(the serial
 * number's DER content octets). Caller frees. CS_EINVALID when the text
 * holds no certificate or the certificate has no AKI keyIdentifier.
 */
int jose_ari_cert_id(const char *cert_pem, size_t len, char **out);

#endif
