/*
 * Opens what config's `state:` section names: the state backend (file or
 * postgres) and the key store that goes with it (the file store under
 * state.keyDir, or the encrypted table in the same PostgreSQL schema).
 * Messages never hold the database URL's password or the encryption key.
 */
#ifndef CS_RECONCILER_BACKENDS_H
#define CS_RECONCILER_BACKENDS_H

#include "config.h"

struct state_backend;
struct keystore;

/* The configured state backend. A database that cannot be reached is CS_ETRANSIENT. */
int backends_open_state(const struct config *c, struct state_backend **out);

/*
 * The configured key store. For postgres, a missing or wrong encryptionKey
 * is CS_EAUTH with a message naming state.encryptionKey.
 */
int backends_open_keystore(const struct config *c, struct keystore **out);

/* "file /var/lib/certsync/state.json" or "postgres host=db port=5432 dbname=certsync schema=certsync", for logs. */
void backends_describe(const struct config *c, char *out, size_t n);

/*
 * The same for a named backend (STATE_BACKEND_FILE or _POSTGRES), whatever
 * state.backend says: `state migrate` opens both sides. The file side needs
 * state.path (and keyDir, defaulted beside it), the postgres side state.url
 * and state.encryptionKey; a side the config does not describe is CS_EINVALID
 * naming the missing field.
 */
int backends_open_state_as(const struct config *c, int backend, struct state_backend **out);
int backends_open_keystore_as(const struct config *c, int backend, struct keystore **out);
void backends_describe_as(const struct config *c, int backend, char *out, size_t n);

#endif
