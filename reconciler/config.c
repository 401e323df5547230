/* The operator's config file: schema, defaults, credential references. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/crypto.h"
#include "../util/err.h"
#include "../util/fsutil.h"
#include "../util/util.h"
#include "../state/pgconn.h"
#include "../state/state_pg.h"
#include "provider.h"
#include "source/gitsrc.h"

#define CONFIG_MAX_BYTES (1024 * 1024)
#define CRED_MAX_BYTES (64 * 1024)

char *config_resolve_path(const char *config_file, const char *path)
{
	char *dir = fsutil_dirname(config_file);
	char *r = fsutil_abspath(dir, path);

	free(dir);
	return r;
}

void config_cred_free(struct cred *c)
{
	free(c->ref);
	free(c->where);
	c->ref = c->where = NULL;
	c->kind = CRED_NONE;
}

int config_parse_cred(const struct ynode *n, const char *file, const char *what, int allow_literal, struct diags *d,
		      struct cred *out)
{
	static const char *const keys[] = {"env", "file", NULL};
	const struct ynode *env, *path;
	const char *s;

	memset(out, 0, sizeof(*out));
	if (!n)
		return 0;
	out->where = xasprintf("%s:%d:%d", file, n->line, n->col);
	if (n->type == YNODE_SCALAR) {
		if (!allow_literal) {
			diags_add(d, file, n->line, n->col,
				  "%s: a secret cannot be written in the config; use {env: NAME} or {file: PATH}",
				  what);
			return CS_EINVALID;
		}
		out->kind = CRED_LITERAL;
		out->ref = xstrdup(n->str);
		return 0;
	}
	if (ynode_expect(n, YNODE_MAP, file, what, d))
		return CS_EINVALID;
	if (ynode_check_keys(n, keys, file, what, d))
		return CS_EINVALID;
	env = ynode_get(n, "env");
	path = ynode_get(n, "file");
	if ((env && path) || (!env && !path)) {
		diags_add(d, file, n->line, n->col, "%s: give exactly one of env or file", what);
		return CS_EINVALID;
	}
	if (env) {
		if (ynode_string(env, file, what, d, &s))
			return CS_EINVALID;
		if (!*s) {
			diags_add(d, file, env->line, env->col, "%s: env: empty variable name", what);
			return CS_EINVALID;
		}
		out->kind = CRED_ENV;
		out->ref = xstrdup(s);
	} else {
		if (ynode_string(path, file, what, d, &s))
			return CS_EINVALID;
		out->kind = CRED_FILE;
		out->ref = config_resolve_path(file, s);
	}
	return 0;
}

int config_cred_read(const struct cred *c, const char *what, struct buf *out)
{
	struct stat st;
	int rc;

	buf_init(out, CRED_MAX_BYTES);
	switch (c->kind) {
	case CRED_NONE: return cs_error(CS_ENOTFOUND, "%s: no credential configured", what);
	case CRED_LITERAL: return buf_puts(out, c->ref);
	case CRED_ENV: {
		const char *v = getenv(c->ref);

		if (!v || !*v)
			return cs_error(CS_EAUTH, "%s: environment variable %s (%s) is not set", what, c->ref,
					c->where);
		return buf_puts(out, v);
	}
	case CRED_FILE:
		if (stat(c->ref, &st))
			return cs_error(CS_EAUTH, "%s: %s (%s): %s", what, c->ref, c->where, strerror(errno));
		if (st.st_mode & (S_IRWXG | S_IRWXO))
			return cs_error(CS_EAUTH,
					"%s: %s is readable by group or others (mode %04o); chmod 600 it (%s)", what,
					c->ref, (unsigned)(st.st_mode & 07777), c->where);
		if ((rc = fsutil_read_file(c->ref, CRED_MAX_BYTES, out)))
			return cs_error(rc == CS_ETRANSIENT ? rc : CS_EAUTH, "%s: cannot read %s (%s)", what, c->ref,
					c->where);
		while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
			out->data[--out->len] = '\0';
		if (!out->len) {
			buf_wipe(out);
			return cs_error(CS_EAUTH, "%s: %s is empty (%s)", what, c->ref, c->where);
		}
		return 0;
	default: break;
	}
	return cs_error(CS_ERROR, "%s: bad credential", what);
}

#define CONFIG_PUBLIC_MAX (1024 * 1024)

int config_public_read(const struct cred *c, const char *what, struct buf *out)
{
	const char *v;
	int rc;

	buf_init(out, CONFIG_PUBLIC_MAX);
	if (c->kind == CRED_ENV) {
		if (!(v = getenv(c->ref)) || !*v)
			return cs_error(CS_EINVALID, "%s: environment variable %s (%s) is not set", what, c->ref,
					c->where);
		return buf_puts(out, v);
	}
	if (c->kind != CRED_FILE)
		return cs_error(CS_EINVALID, "%s: not configured", what);
	if ((rc = fsutil_read_file(c->ref, CONFIG_PUBLIC_MAX, out)))
		return cs_error(rc == CS_ENOTFOUND ? CS_EINVALID : rc, "%s: cannot read %s (%s): %s", what, c->ref,
				c->where, cs_errmsg());
	if (!out->len || strspn(out->data, " \t\r\n") == out->len)
		return cs_error(CS_EINVALID, "%s: %s is empty (%s)", what, c->ref, c->where);
	return 0;
}

/* Reads an optional string field into *out (copied). */
static void config_str(const struct ynode *map, const char *key, const char *file, const char *what, struct diags *d,
		       char **out)
{
	const struct ynode *n = ynode_get(map, key);
	const char *s;

	if (n && !ynode_string(n, file, what, d, &s)) {
		free(*out);
		*out = xstrdup(s);
	}
}

/* Reads an optional path field, resolved against the config file. */
static void config_pathfield(const struct ynode *map, const char *key, const char *file, const char *what,
			     struct diags *d, char **out)
{
	const struct ynode *n = ynode_get(map, key);
	const char *s;

	if (n && !ynode_string(n, file, what, d, &s)) {
		if (!*s) {
			diags_add(d, file, n->line, n->col, "%s: empty path", what);
			return;
		}
		free(*out);
		*out = config_resolve_path(file, s);
	}
}

/* A URL or an scp-like SSH remote (git@host:org/repo.git): anything that is not a local path. */
static int config_is_url(const char *s)
{
	return gitsrc_is_remote(s);
}

/* source.verify: {mode: head, keys: {file|env}} (Flux's spec.verify; only the head commit is checked). */
static void config_parse_verify(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"mode", "keys", NULL};
	const struct ynode *v;
	const char *s;

	if (ynode_expect(n, YNODE_MAP, file, "source.verify", d) || ynode_check_keys(n, keys, file, "source.verify", d))
		return;
	c->source.verify.on = 1;
	if ((v = ynode_get(n, "mode")) && !ynode_string(v, file, "source.verify.mode", d, &s) && strcasecmp(s, "head"))
		diags_add(d, file, v->line, v->col,
			  "source.verify.mode: \"%s\" is not supported; use \"head\" (the commit the ref points at "
			  "must be signed by one of source.verify.keys)",
			  s);
	if ((v = ynode_get(n, "keys")))
		config_parse_cred(v, file, "source.verify.keys", 0, d, &c->source.verify.keys);
	else
		diags_add(d, file, n->line, n->col,
			  "source.verify: missing required field \"keys\" (the trusted public keys: {file: PATH})");
}

/* SSH remotes need a deploy key and known host keys; the other settings only mean something for them. */
static void config_check_ssh(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	if (!c->source.repo || !gitsrc_is_ssh_url(c->source.repo))
		return;
	if (c->source.known_hosts.kind == CRED_NONE)
		diags_add(d, file, n->line, n->col,
			  "source: an SSH repository needs \"knownHosts\" ({file: PATH} in known_hosts format, e.g. "
			  "from ssh-keyscan after checking the fingerprint): host keys are never accepted unchecked");
	if (c->source.ssh_key.kind == CRED_NONE)
		diags_add(d, file, n->line, n->col,
			  "source: an SSH repository needs \"sshKey\" (the deploy key: {file: PATH} or {env: NAME})");
}

static void config_parse_source(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"repo",	 "ref",	   "path",
					   "interval",	 "token",  "cacheDir",
					   "caFile",	 "sshKey", "sshKeyPassphrase",
					   "knownHosts", "verify", "receiverSecret",
					   "suspend",	 NULL};
	const struct ynode *v;
	const char *s;

	if (ynode_expect(n, YNODE_MAP, file, "source", d))
		return;
	ynode_check_keys(n, keys, file, "source", d);
	if ((v = ynode_get(n, "repo")) && !ynode_string(v, file, "source.repo", d, &s)) {
		if (!*s)
			diags_add(d, file, v->line, v->col, "source.repo: empty");
		else
			c->source.repo = config_is_url(s) ? xstrdup(s) : config_resolve_path(file, s);
	} else if (!v) {
		diags_add(d, file, n->line, n->col, "source: missing required field \"repo\"");
	}
	config_str(n, "ref", file, "source.ref", d, &c->source.ref);
	config_str(n, "path", file, "source.path", d, &c->source.path);
	if (c->source.path) {
		const char *why;

		if (*c->source.path && strcmp(c->source.path, ".") && (why = manifest_check_relpath(c->source.path))) {
			v = ynode_get(n, "path");
			diags_add(d, file, v->line, v->col, "source.path: %s", why);
		}
	}
	if ((v = ynode_get(n, "interval")))
		ynode_duration(v, file, "source.interval", d, &c->source.interval);
	if ((v = ynode_get(n, "token")))
		config_parse_cred(v, file, "source.token", 0, d, &c->source.token);
	config_pathfield(n, "cacheDir", file, "source.cacheDir", d, &c->source.cache_dir);
	config_pathfield(n, "caFile", file, "source.caFile", d, &c->source.ca_file);
	if ((v = ynode_get(n, "sshKey")))
		config_parse_cred(v, file, "source.sshKey", 0, d, &c->source.ssh_key);
	if ((v = ynode_get(n, "sshKeyPassphrase")))
		config_parse_cred(v, file, "source.sshKeyPassphrase", 0, d, &c->source.ssh_passphrase);
	if ((v = ynode_get(n, "knownHosts")))
		config_parse_cred(v, file, "source.knownHosts", 0, d, &c->source.known_hosts);
	if ((v = ynode_get(n, "verify")))
		config_parse_verify(c, v, file, d);
	if ((v = ynode_get(n, "receiverSecret")))
		config_parse_cred(v, file, "source.receiverSecret", 0, d, &c->source.receiver_secret);
	if ((v = ynode_get(n, "suspend")))
		ynode_bool(v, file, "source.suspend", d, &c->source.suspend);
	config_check_ssh(c, n, file, d);
}

#define CONFIG_LEASE_MIN_S 3
#define CONFIG_LEASE_MAX_S 600
#define CONFIG_REPLICA_ID_MAX 128

static const char *const state_backend_names[] = {"file", "postgres", NULL};

static void config_parse_backend(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	const char *s;

	if (ynode_string(n, file, "state.backend", d, &s))
		return;
	for (int i = 0; state_backend_names[i]; i++) {
		if (!strcmp(s, state_backend_names[i])) {
			c->state.backend = i ? STATE_BACKEND_POSTGRES : STATE_BACKEND_FILE;
			return;
		}
	}
	diags_add(d, file, n->line, n->col, "state.backend: unknown backend \"%s\" (file or postgres)", s);
}

/* The postgres fields: credentials, schema, lease, replica id (all optional here; see config_check_state). */
static void config_parse_state_pg(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	const struct ynode *v;
	int64_t secs;

	if ((v = ynode_get(n, "url")))
		config_parse_cred(v, file, "state.url", 0, d, &c->state.url);
	if ((v = ynode_get(n, "encryptionKey")))
		config_parse_cred(v, file, "state.encryptionKey", 0, d, &c->state.encryption_key);
	if ((v = ynode_get(n, "previousEncryptionKey")))
		config_parse_cred(v, file, "state.previousEncryptionKey", 0, d, &c->state.previous_encryption_key);
	config_str(n, "schema", file, "state.schema", d, &c->state.schema);
	if (c->state.schema && !pgconn_schema_valid(c->state.schema)) {
		v = ynode_get(n, "schema");
		diags_add(d, file, v->line, v->col,
			  "state.schema: \"%s\" is not a plain identifier (lowercase letters, digits and _, not "
			  "starting with a digit or pg_, at most %d characters)",
			  c->state.schema, PGCONN_SCHEMA_MAX);
	}
	if ((v = ynode_get(n, "leaseDuration")) && !ynode_duration(v, file, "state.leaseDuration", d, &secs)) {
		if (secs < CONFIG_LEASE_MIN_S || secs > CONFIG_LEASE_MAX_S)
			diags_add(d, file, v->line, v->col, "state.leaseDuration: must be from %ds to %dm, got %s",
				  CONFIG_LEASE_MIN_S, CONFIG_LEASE_MAX_S / 60, v->str);
		else
			c->state.lease_ms = secs * 1000;
	}
	config_str(n, "replicaId", file, "state.replicaId", d, &c->state.replica_id);
	if (c->state.replica_id) {
		size_t len = strlen(c->state.replica_id);

		v = ynode_get(n, "replicaId");
		if (!len || len > CONFIG_REPLICA_ID_MAX || c->state.replica_id[strcspn(c->state.replica_id, "\n\r\t")])
			diags_add(d, file, v->line, v->col,
				  "state.replicaId: must be 1 to %d characters on one line, no tabs",
				  CONFIG_REPLICA_ID_MAX);
	}
}

static void config_parse_state(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {
		"backend",	 "path",      "keyDir", "url", "schema", "encryptionKey", "previousEncryptionKey",
		"leaseDuration", "replicaId", NULL};
	const struct ynode *v;

	if (ynode_expect(n, YNODE_MAP, file, "state", d))
		return;
	ynode_check_keys(n, keys, file, "state", d);
	if ((v = ynode_get(n, "backend")))
		config_parse_backend(c, v, file, d);
	config_pathfield(n, "path", file, "state.path", d, &c->state_path);
	config_pathfield(n, "keyDir", file, "state.keyDir", d, &c->key_dir);
	config_parse_state_pg(c, n, file, d);
	if (c->state.backend == STATE_BACKEND_FILE && !ynode_get(n, "path"))
		diags_add(d, file, n->line, n->col, "state: missing required field \"path\"");
	if (c->state.backend != STATE_BACKEND_POSTGRES)
		return;
	if (!ynode_get(n, "url"))
		diags_add(d, file, n->line, n->col,
			  "state: backend postgres needs \"url\" (the database's libpq URL, e.g. {env: "
			  "CERTSYNC_DATABASE_URL})");
	if (!ynode_get(n, "encryptionKey"))
		diags_add(d, file, n->line, n->col,
			  "state: backend postgres needs \"encryptionKey\" (base64 of 32 random bytes, e.g. {env: "
			  "CERTSYNC_STATE_KEY}; make one with: openssl rand -base64 32)");
}

static void config_parse_output(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"root", "keepPreviousFor", "pkcs12Password", NULL};
	const struct ynode *v;

	if (ynode_expect(n, YNODE_MAP, file, "output", d))
		return;
	ynode_check_keys(n, keys, file, "output", d);
	config_pathfield(n, "root", file, "output.root", d, &c->output_root);
	if (!ynode_get(n, "root"))
		diags_add(d, file, n->line, n->col, "output: missing required field \"root\"");
	if ((v = ynode_get(n, "keepPreviousFor"))) {
		/* 0 (any unit: "0", "0s", "0m") removes a replaced generation at once; durations are otherwise > 0. */
		if (v->type == YNODE_SCALAR && v->str[0] == '0' && strspn(v->str, "0") == strcspn(v->str, "smhd") &&
		    strlen(v->str) <= strspn(v->str, "0") + 1)
			c->output.keep_previous = 0;
		else
			ynode_duration(v, file, "output.keepPreviousFor", d, &c->output.keep_previous);
	}
	if ((v = ynode_get(n, "pkcs12Password")))
		config_parse_cred(v, file, "output.pkcs12Password", 0, d, &c->output.pkcs12_password);
}

static void config_parse_issuer(struct config *c, const struct ynode *key, const struct ynode *n, const char *file,
				struct diags *d)
{
	struct issuer *is;
	const struct ynode *t;
	const char *type, *why;
	char *what = xasprintf("issuers.%s", key->str);

	if ((why = manifest_check_dns_name(key->str, 0)) || strchr(key->str, '.')) {
		diags_add(d, file, key->line, key->col,
			  "issuer name \"%s\" is not valid (lowercase letters, digits and '-')", key->str);
		goto out;
	}
	if (ynode_expect(n, YNODE_MAP, file, what, d))
		goto out;
	if (!(t = ynode_get(n, "type"))) {
		diags_add(d, file, n->line, n->col, "%s: missing required field \"type\" (%s)", what,
			  provider_type_list());
		goto out;
	}
	if (ynode_string(t, file, what, d, &type))
		goto out;
	is = &c->issuers[c->n_issuers]; /* room for every key was allocated by the caller */
	memset(is, 0, sizeof(*is));
	is->ops = provider_find(type);
	if (!is->ops) {
		diags_add(d, file, t->line, t->col, "%s.type: unknown issuer type \"%s\" (%s)", what, type,
			  provider_type_list());
		goto out;
	}
	is->name = xstrdup(key->str);
	is->line = key->line;
	is->col = key->col;
	c->n_issuers++;
	/* A broken issuer stays listed, so manifests naming it do not also say "unknown issuer". */
	is->ops->config_parse(n, file, key->str, d, &is->priv);
out:
	free(what);
}

static void config_parse_issuers(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	if (ynode_expect(n, YNODE_MAP, file, "issuers", d))
		return;
	if (n->n == 0)
		diags_add(d, file, n->line, n->col, "issuers: at least one issuer is required");
	c->issuers = xcalloc(n->n ? n->n : 1, sizeof(*c->issuers));
	for (size_t i = 0; i < n->n; i++) {
		const struct ynode *k = n->kv[2 * i];
		const char *name;

		/* the YAML reader refuses such keys; this keeps the loop safe on any tree */
		if (ynode_string(k, file, "issuers: an issuer name", d, &name))
			continue;
		for (size_t j = 0; j < i; j++) {
			if (n->kv[2 * j]->type == YNODE_SCALAR && !strcmp(n->kv[2 * j]->str, name)) {
				diags_add(d, file, k->line, k->col, "duplicate issuer \"%s\" (first at line %d)",
					  k->str, n->kv[2 * j]->line);
				goto next;
			}
		}
		config_parse_issuer(c, k, n->kv[2 * i + 1], file, d);
	next:;
	}
}

static void config_parse_server(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"listen",	 "publicURL",	    "webhookSecret",
					   "adminToken", "livenessTimeout", NULL};
	const struct ynode *v;

	if (ynode_expect(n, YNODE_MAP, file, "server", d))
		return;
	ynode_check_keys(n, keys, file, "server", d);
	config_str(n, "listen", file, "server.listen", d, &c->server.listen);
	c->server.listen_set = c->server.listen != NULL;
	config_str(n, "publicURL", file, "server.publicURL", d, &c->server.public_url);
	/* Caught here, with a position, rather than when `run` starts listening or registers. */
	if (c->server.listen && (v = ynode_get(n, "listen"))) {
		const char *colon = strrchr(c->server.listen, ':');

		if (!colon || !colon[1] || colon[strspn(colon + 1, "0123456789") + 1] ||
		    strtol(colon + 1, NULL, 10) > 65535)
			diags_add(d, file, v->line, v->col, "server.listen: expected HOST:PORT, got \"%s\"",
				  c->server.listen);
	}
	if (c->server.public_url && (v = ynode_get(n, "publicURL")) && strncmp(c->server.public_url, "https://", 8) &&
	    strncmp(c->server.public_url, "http://", 7))
		diags_add(d, file, v->line, v->col, "server.publicURL: expected an https:// URL, got \"%s\"",
			  c->server.public_url);
	if ((v = ynode_get(n, "webhookSecret")))
		config_parse_cred(v, file, "server.webhookSecret", 0, d, &c->server.webhook_secret);
	if ((v = ynode_get(n, "adminToken")))
		config_parse_cred(v, file, "server.adminToken", 0, d, &c->server.admin_token);
	if ((v = ynode_get(n, "livenessTimeout")))
		ynode_duration(v, file, "server.livenessTimeout", d, &c->server.liveness_timeout);
}

static void config_parse_policy(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"prune", "maxPaidOrders", "revokeOnRemove", NULL};
	const struct ynode *v;
	int64_t cap;

	if (ynode_expect(n, YNODE_MAP, file, "policy", d))
		return;
	ynode_check_keys(n, keys, file, "policy", d);
	if ((v = ynode_get(n, "prune")))
		ynode_bool(v, file, "policy.prune", d, &c->policy.prune);
	if ((v = ynode_get(n, "maxPaidOrders")) && !ynode_int(v, file, "policy.maxPaidOrders", 0, 100000, d, &cap))
		c->policy.max_paid_orders = (int)cap;
	if ((v = ynode_get(n, "revokeOnRemove")))
		ynode_bool(v, file, "policy.revokeOnRemove", d, &c->policy.revoke_on_remove);
}

/* A hook command: a list of strings (argv, no shell), the first an absolute path. */
static void config_parse_argv(const struct ynode *v, const char *file, const char *what, struct diags *d, char ***argv,
			      size_t *n)
{
	if (ynode_expect(v, YNODE_SEQ, file, what, d))
		return;
	if (v->n == 0)
		diags_add(d, file, v->line, v->col, "%s: empty command", what);
	*argv = xcalloc(v->n + 1, sizeof(char *));
	for (size_t i = 0; i < v->n; i++) {
		const char *s;

		if (!ynode_string(v->items[i], file, what, d, &s))
			(*argv)[(*n)++] = xstrdup(s);
	}
	if (*n && (*argv)[0][0] != '/')
		diags_add(d, file, v->items[0]->line, v->items[0]->col, "%s: the command must be an absolute path",
			  what);
}

static void config_parse_hooks(struct config *c, const struct ynode *n, const char *file, struct diags *d)
{
	static const char *const keys[] = {"onChange", "afterApply", "timeout", NULL};
	const struct ynode *v;

	if (ynode_expect(n, YNODE_MAP, file, "hooks", d))
		return;
	ynode_check_keys(n, keys, file, "hooks", d);
	if ((v = ynode_get(n, "onChange")))
		config_parse_argv(v, file, "hooks.onChange", d, &c->hooks.on_change, &c->hooks.n_on_change);
	if ((v = ynode_get(n, "afterApply")))
		config_parse_argv(v, file, "hooks.afterApply", d, &c->hooks.after_apply, &c->hooks.n_after_apply);
	if ((v = ynode_get(n, "timeout")))
		ynode_duration(v, file, "hooks.timeout", d, &c->hooks.timeout);
}

static void config_defaults(struct config *c)
{
	char *state_dir;

	if (!c->source.ref)
		c->source.ref = xstrdup("HEAD");
	if (!c->source.path)
		c->source.path = xstrdup("");
	if (!c->source.interval)
		c->source.interval = 60;
	if (!c->hooks.timeout)
		c->hooks.timeout = 30;
	if (c->output.keep_previous < 0)
		c->output.keep_previous = 60;
	if (!c->server.listen)
		c->server.listen = xstrdup("127.0.0.1:9402");
	if (!c->state.schema)
		c->state.schema = xstrdup(STATE_PG_DEFAULT_SCHEMA);
	if (!c->state.lease_ms)
		c->state.lease_ms = STATE_PG_DEFAULT_LEASE_MS;
	if (!c->state_path)
		return;
	state_dir = fsutil_dirname(c->state_path);
	if (!c->key_dir)
		c->key_dir = fsutil_join(state_dir, "keys");
	if (!c->source.cache_dir)
		c->source.cache_dir = fsutil_join(state_dir, "cache");
	free(state_dir);
}

int config_parse(const char *path, const char *data, size_t len, struct config **out, struct diags *d)
{
	return config_parse_mode(path, data, len, 0, out, d);
}

int config_parse_mode(const char *path, const char *data, size_t len, int mode, struct config **out, struct diags *d)
{
	static const char *const keys[] = {"source", "state", "output", "issuers", "server", "policy", "hooks", NULL};
	struct yfile *yf = NULL;
	struct config *c = xcalloc(1, sizeof(*c));
	const struct ynode *root, *v;
	size_t before = d->n;
	int rc = 0;

	*out = NULL;
	c->path = xstrdup(path);
	c->dir = fsutil_dirname(path);
	c->policy.max_paid_orders = 10;
	c->output.keep_previous = -1;
	manifest_yaml_parse(path, data, len, &yf, d);
	if (d->n > before)
		goto out;
	if (yf->n_docs != 1 || !yf->docs[0].root) {
		diags_add(d, path, 0, 0, "the config must be exactly one YAML document");
		goto out;
	}
	root = yf->docs[0].root;
	if (ynode_expect(root, YNODE_MAP, path, "config", d))
		goto out;
	ynode_check_keys(root, keys, path, "config", d);
	if ((v = ynode_get(root, "source")))
		config_parse_source(c, v, path, d);
	else if (!(mode & CONFIG_PR_PLAN))
		diags_add(d, path, 1, 1, "missing required section \"source\"");
	if ((v = ynode_get(root, "state")))
		config_parse_state(c, v, path, d);
	else if (!(mode & CONFIG_PR_PLAN))
		diags_add(d, path, 1, 1, "missing required section \"state\"");
	if ((v = ynode_get(root, "output")))
		config_parse_output(c, v, path, d);
	else if (!(mode & CONFIG_PR_PLAN))
		diags_add(d, path, 1, 1, "missing required section \"output\"");
	if ((v = ynode_get(root, "issuers")))
		config_parse_issuers(c, v, path, d);
	else
		diags_add(d, path, 1, 1, "missing required section \"issuers\"");
	if ((v = ynode_get(root, "server")))
		config_parse_server(c, v, path, d);
	if ((v = ynode_get(root, "policy")))
		config_parse_policy(c, v, path, d);
	if ((v = ynode_get(root, "hooks")))
		config_parse_hooks(c, v, path, d);
	/* Once every section is read (an acme serve solver needs server.listen), before the defaults fill it in. */
	for (size_t i = 0; i < c->n_issuers; i++)
		if (c->issuers[i].priv && c->issuers[i].ops->config_check)
			c->issuers[i].ops->config_check(c, &c->issuers[i], path, d);
	config_defaults(c);
	/* postgres without state.path: there is no state directory to keep a remote repository's clone beside */
	if (c->source.repo && config_is_url(c->source.repo) && !c->source.cache_dir && (v = ynode_get(root, "source")))
		diags_add(d, path, v->line, v->col,
			  "source: a remote repository needs \"cacheDir\" when state.path is not set (the postgres "
			  "backend has no state directory to keep the clone beside)");
out:
	manifest_yaml_free(yf);
	if (d->n > before) {
		config_free(c);
		diags_sort(d);
		return CS_EINVALID;
	}
	*out = c;
	return rc;
}

int config_load(const char *path, struct config **out, struct diags *d)
{
	return config_load_mode(path, 0, out, d);
}

int config_load_mode(const char *path, int mode, struct config **out, struct diags *d)
{
	struct buf b = BUF_INIT;
	char *abs = fsutil_abspath(NULL, path);
	int rc;

	*out = NULL;
	rc = fsutil_read_file(abs, CONFIG_MAX_BYTES, &b);
	if (rc == CS_ENOTFOUND) {
		rc = cs_error(CS_ENOTFOUND, "config file %s not found (use --config PATH)", path);
		goto out;
	}
	if (rc) {
		diags_add(d, path, 0, 0, "%s", cs_errmsg());
		rc = CS_EINVALID;
		goto out;
	}
	rc = config_parse_mode(abs, b.data, b.len, mode, out, d);
	/* Diagnostics name the file as the user wrote it. */
	for (size_t i = 0; i < d->n; i++) {
		if (!strcmp(d->v[i].file, abs)) {
			free(d->v[i].file);
			d->v[i].file = xstrdup(path);
		}
	}
out:
	buf_free(&b);
	free(abs);
	return rc;
}

void config_free(struct config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->dir);
	free(c->source.repo);
	free(c->source.ref);
	free(c->source.path);
	config_cred_free(&c->source.token);
	config_cred_free(&c->source.ssh_key);
	config_cred_free(&c->source.ssh_passphrase);
	config_cred_free(&c->source.known_hosts);
	config_cred_free(&c->source.verify.keys);
	config_cred_free(&c->source.receiver_secret);
	free(c->source.cache_dir);
	free(c->source.ca_file);
	free(c->state_path);
	config_cred_free(&c->state.url);
	free(c->state.schema);
	config_cred_free(&c->state.encryption_key);
	config_cred_free(&c->state.previous_encryption_key);
	free(c->state.replica_id);
	free(c->key_dir);
	free(c->output_root);
	for (size_t i = 0; i < c->n_issuers; i++) {
		if (c->issuers[i].ops && c->issuers[i].ops->config_free)
			c->issuers[i].ops->config_free(c->issuers[i].priv);
		free(c->issuers[i].name);
	}
	free(c->issuers);
	free(c->server.listen);
	free(c->server.public_url);
	config_cred_free(&c->server.webhook_secret);
	config_cred_free(&c->server.admin_token);
	for (size_t i = 0; i < c->hooks.n_on_change; i++)
		free(c->hooks.on_change[i]);
	free(c->hooks.on_change);
	for (size_t i = 0; i < c->hooks.n_after_apply; i++)
		free(c->hooks.after_apply[i]);
	free(c->hooks.after_apply);
	config_cred_free(&c->output.pkcs12_password);
	free(c);
}

const struct issuer *config_issuer(const struct config *c, const char *name)
{
	for (size_t i = 0; i < c->n_issuers; i++)
		if (!strcmp(c->issuers[i].name, name))
			return &c->issuers[i];
	return NULL;
}

static void config_set(char **field, const char *value, int as_path)
{
	if (!value)
		return;
	free(*field);
	*field = as_path ? fsutil_abspath(NULL, value) : xstrdup(value);
}

void config_override(struct config *c, const char *repo, const char *ref, const char *path, const char *state,
		     const char *output_root)
{
	if (repo)
		config_set(&c->source.repo, repo, !config_is_url(repo));
	config_set(&c->source.ref, ref, 0);
	config_set(&c->source.path, path, 0);
	config_set(&c->output_root, output_root, 1);
	if (state) {
		/* keys/ and cache/ follow the state unless the config placed them explicitly */
		char *old_dir = fsutil_dirname(c->state_path ? c->state_path : "./x");
		char *old_keys = fsutil_join(old_dir, "keys"), *old_cache = fsutil_join(old_dir, "cache");
		char *new_dir;

		/* A state file named on the command line is the file backend's (state migrate: its file side). */
		c->state.backend = STATE_BACKEND_FILE;
		config_set(&c->state_path, state, 1);
		new_dir = fsutil_dirname(c->state_path);
		if (!c->key_dir || util_streq(c->key_dir, old_keys)) {
			free(c->key_dir);
			c->key_dir = fsutil_join(new_dir, "keys");
		}
		if (!c->source.cache_dir || util_streq(c->source.cache_dir, old_cache)) {
			free(c->source.cache_dir);
			c->source.cache_dir = fsutil_join(new_dir, "cache");
		}
		free(new_dir);
		free(old_dir);
		free(old_keys);
		free(old_cache);
	}
}
