/* The state backend and key store the config names (file or postgres), with their secrets registered for redaction. */
#include "backends.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../state/keystore.h"
#include "../state/pgconn.h"
#include "../state/state.h"
#include "../state/state_pg.h"
#include "../util/aead.h"
#include "../util/err.h"
#include "../util/log.h"
#include "../util/util.h"

#define BACKENDS_HOST_MAX 256

/*
 * Registers the password a conninfo carries (as libpq decodes it and as it
 * is written in a URI, percent-encoded) and PGPASSWORD, so that no message
 * or log line shows them, whatever quotes the URL.
 */
static void backends_register_url(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	const char *scheme = strstr(conninfo, "://"), *env = getenv("PGPASSWORD");

	for (const PQconninfoOption *o = opts; o && o->keyword; o++)
		if (!strcmp(o->keyword, "password") && o->val && *o->val)
			log_add_secret(o->val);
	PQconninfoFree(opts);
	if (env && *env)
		log_add_secret(env);
	/* postgresql://user:PASSWORD@host/...: the raw (maybe percent-encoded) form */
	if (scheme) {
		const char *user = scheme + 3, *at = strchr(user, '@'), *slash = strchr(user, '/');
		const char *colon = strchr(user, ':');

		if (at && (!slash || at < slash) && colon && colon < at) {
			char *raw = xasprintf("%.*s", (int)(at - colon - 1), colon + 1);

			log_add_secret(raw);
			explicit_bzero(raw, strlen(raw));
			free(raw);
		}
	}
}

/* Reads state.url into out (a secret: buf_wipe it) and registers its password. */
static int backends_read_url(const struct config *c, struct buf *out)
{
	int rc;

	if (c->state.url.kind == CRED_NONE) {
		buf_init(out, 0);
		return cs_error(CS_EINVALID, "%s: state.url is not set: the postgres backend needs the database URL",
				c->path);
	}
	if ((rc = config_cred_read(&c->state.url, "state.url", out))) {
		buf_wipe(out);
		return rc;
	}
	backends_register_url(out->data);
	return 0;
}

/* Reads and decodes one encryption key (a missing reference is CS_EAUTH naming `what`). */
static int backends_read_key(const struct config *c, const struct cred *cr, const char *what,
			     unsigned char key[AEAD_KEY_LEN])
{
	struct buf b;
	int rc;

	if (cr->kind == CRED_NONE)
		return cs_error(CS_EAUTH, "%s: %s is not set: the postgres key store needs it", c->path, what);
	if ((rc = config_cred_read(cr, what, &b)))
		goto out;
	log_add_secret(b.data);
	if (aead_key_decode(b.data, b.len, what, key))
		rc = cs_error(CS_EAUTH, "%s (%s)", cs_errmsg(), cr->where);
out:
	buf_wipe(&b);
	return rc;
}

/* state.replicaId, or $POD_NAME or the host name, with this process's pid. Caller frees. */
static char *backends_replica_id(const struct config *c)
{
	char host[BACKENDS_HOST_MAX];
	const char *pod = getenv("POD_NAME");

	if (c->state.replica_id)
		return xstrdup(c->state.replica_id);
	if (pod && *pod)
		return xasprintf("%.128s:%ld", pod, (long)getpid());
	if (gethostname(host, sizeof(host)))
		snprintf(host, sizeof(host), "unknown-host");
	host[sizeof(host) - 1] = '\0';
	return xasprintf("%.128s:%ld", host, (long)getpid());
}

int backends_open_state_as(const struct config *c, int backend, struct state_backend **out)
{
	struct state_pg_opts o;
	struct buf url;
	char *id;
	int rc;

	*out = NULL;
	if (backend == STATE_BACKEND_FILE) {
		if (!c->state_path)
			return cs_error(CS_EINVALID,
					"%s: state.path is not set: the file backend needs the state file's path (or "
					"--state FILE)",
					c->path);
		return state_file_open(c->state_path, out);
	}
	if ((rc = backends_read_url(c, &url)))
		return rc;
	id = backends_replica_id(c);
	memset(&o, 0, sizeof(o));
	o.conninfo = url.data;
	o.schema = c->state.schema;
	o.lease_ms = c->state.lease_ms;
	o.replica_id = id;
	o.cache_dir = c->source.cache_dir; /* the local decoded snapshot, beside the parse cache */
	rc = state_pg_open(&o, out);
	free(id);
	buf_wipe(&url);
	return rc;
}

int backends_open_state(const struct config *c, struct state_backend **out)
{
	return backends_open_state_as(c, c->state.backend, out);
}

int backends_open_keystore_as(const struct config *c, int backend, struct keystore **out)
{
	struct keystore_pg_opts o;
	unsigned char key[AEAD_KEY_LEN], old[AEAD_KEY_LEN];
	struct buf url = BUF_INIT;
	int rc, has_old = 0;

	*out = NULL;
	memset(key, 0, sizeof(key));
	memset(old, 0, sizeof(old));
	if (backend == STATE_BACKEND_FILE) {
		if (!c->key_dir)
			return cs_error(CS_EINVALID,
					"%s: state.keyDir is not set: the file key store needs a directory (state.path "
					"or state.keyDir)",
					c->path);
		*out = keystore_open_dir(c->key_dir);
		return 0;
	}
	/* The key first: a missing or malformed key is a configuration error before any connection. */
	if ((rc = backends_read_key(c, &c->state.encryption_key, "state.encryptionKey", key)))
		goto out;
	if (c->state.previous_encryption_key.kind != CRED_NONE) {
		if ((rc = backends_read_key(c, &c->state.previous_encryption_key, "state.previousEncryptionKey", old)))
			goto out;
		has_old = 1;
	}
	if ((rc = backends_read_url(c, &url)))
		goto out;
	memset(&o, 0, sizeof(o));
	o.conninfo = url.data;
	o.schema = c->state.schema;
	o.key = key;
	o.old_key = has_old ? old : NULL;
	rc = keystore_open_pg(&o, out);
out:
	explicit_bzero(key, sizeof(key));
	explicit_bzero(old, sizeof(old));
	buf_wipe(&url);
	return rc;
}

int backends_open_keystore(const struct config *c, struct keystore **out)
{
	return backends_open_keystore_as(c, c->state.backend, out);
}

void backends_describe_as(const struct config *c, int backend, char *out, size_t n)
{
	struct buf url;
	char where[PGCONN_WHERE_MAX];

	if (!n)
		return;
	if (backend == STATE_BACKEND_FILE) {
		snprintf(out, n, "file %s", c->state_path ? c->state_path : "(no state.path)");
		return;
	}
	/* Reading the URL here prints nothing: describing never fails, and never shows the password. */
	if (c->state.url.kind == CRED_NONE || config_cred_read(&c->state.url, "state.url", &url)) {
		snprintf(out, n, "postgres (state.url unreadable) schema %s", c->state.schema);
		cs_error_clear();
		if (c->state.url.kind != CRED_NONE)
			buf_wipe(&url);
		return;
	}
	backends_register_url(url.data);
	pgconn_describe(url.data, where, sizeof(where));
	buf_wipe(&url);
	snprintf(out, n, "%s schema %s", where, c->state.schema);
}

void backends_describe(const struct config *c, char *out, size_t n)
{
	backends_describe_as(c, c->state.backend, out, n);
}
