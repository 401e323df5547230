/* The linked libraries' versions (certsync version): each is defined in its library's owner file. */
#ifndef CS_UTIL_LIBVERSION_H
#define CS_UTIL_LIBVERSION_H

#include <stddef.h>

/* Each writes "name version" (as the library reports it at run time) into out; never fails. */
void libversion_curl(char *out, size_t n);	 /* util/http.c */
void libversion_openssl(char *out, size_t n);	 /* util/crypto.c */
void libversion_libgit2(char *out, size_t n);	 /* reconciler/source/gitsrc.c */
void libversion_libyaml(char *out, size_t n);	 /* manifests/yaml.c */
void libversion_jansson(char *out, size_t n);	 /* state/state_json.c */
void libversion_microhttpd(char *out, size_t n); /* reconciler/server/http_server.c */
void libversion_libpq(char *out, size_t n);	 /* state/pgconn.c */
void libversion_ldns(char *out, size_t n);	 /* util/dnsq.c */

#endif
