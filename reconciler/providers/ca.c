/*
 * The built-in CA issuer (the embedded default): signs certificates with a
 * local CA given as files, or generated on first use into a directory, or
 * self-signs them. No account, no network, no money.
 *
 * Steps: issue (key + CSR + signature, material kept in memory) → install;
 * reinstall (lost outputs: the same certificate and key from the key store).
 * A crash between issue and install loses the material; install then sends
 * the certificate back to issue, which is free here.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../util/crypto.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"
#include "../provider.h"

#define CA_DEFAULT_DURATION (90 * 86400)
#define CA_ROOT_LIFETIME (10 * 365 * 86400)
#define CA_MAX_PEM (1024 * 1024)

enum ca_mode { CA_FILES, CA_GENERATE, CA_SELF_SIGNED, CA_MODE__MAX };

struct ca_issuer {
	char *name;
	enum ca_mode mode;
	char *cert_file, *key_file; /* CA_FILES; CA_GENERATE: <dir>/ca.crt, <dir>/ca.key */
	char *dir;
	int64_t duration;
	pthread_mutex_t mu; /* guards the loaded CA below */
	int loaded;
	struct crypto_cert *ca;
	struct crypto_key *ca_key;
	struct buf chain; /* intermediates between the leaf and the root, PEM */
	struct buf root;  /* ca.crt contents */
};

static void ca_config_free(void *priv)
{
	struct ca_issuer *ci = priv;

	if (!ci)
		return;
	free(ci->name);
	free(ci->cert_file);
	free(ci->key_file);
	free(ci->dir);
	crypto_cert_free(ci->ca);
	crypto_key_free(ci->ca_key);
	buf_free(&ci->chain);
	buf_free(&ci->root);
	pthread_mutex_destroy(&ci->mu);
	free(ci);
}

static int ca_config_parse(const struct ynode *node, const char *file, const char *name, struct diags *d, void **priv)
{
	static const char *const keys[] = {"type", "ca", "generate", "selfSigned", "duration", NULL};
	static const char *const ca_keys[] = {"certFile", "keyFile", NULL};
	static const char *const gen_keys[] = {"dir", NULL};
	struct ca_issuer *ci = xcalloc(1, sizeof(*ci));
	const struct ynode *ca, *gen, *self, *v;
	char *what = xasprintf("issuers.%s", name);
	size_t before = d->n;
	const char *s;
	int selfsigned = 0, modes;

	pthread_mutex_init(&ci->mu, NULL);
	ci->name = xstrdup(name);
	ci->duration = CA_DEFAULT_DURATION;
	ynode_check_keys(node, keys, file, what, d);
	ca = ynode_get(node, "ca");
	gen = ynode_get(node, "generate");
	self = ynode_get(node, "selfSigned");
	if (self)
		ynode_bool(self, file, "selfSigned", d, &selfsigned);
	modes = !!ca + !!gen + !!selfsigned;
	if (modes != 1) {
		diags_add(d, file, node->line, node->col,
			  "%s: give exactly one of ca: {certFile, keyFile}, generate: {dir}, or selfSigned: true",
			  what);
		goto out;
	}
	if (ca && !ynode_expect(ca, YNODE_MAP, file, "ca", d)) {
		ci->mode = CA_FILES;
		ynode_check_keys(ca, ca_keys, file, "ca", d);
		if ((v = ynode_get(ca, "certFile")) && !ynode_string(v, file, "ca.certFile", d, &s))
			ci->cert_file = config_resolve_path(file, s);
		if ((v = ynode_get(ca, "keyFile")) && !ynode_string(v, file, "ca.keyFile", d, &s))
			ci->key_file = config_resolve_path(file, s);
		if (!ci->cert_file || !ci->key_file)
			diags_add(d, file, ca->line, ca->col, "%s.ca: certFile and keyFile are both required", what);
	} else if (gen && !ynode_expect(gen, YNODE_MAP, file, "generate", d)) {
		ci->mode = CA_GENERATE;
		ynode_check_keys(gen, gen_keys, file, "generate", d);
		if ((v = ynode_get(gen, "dir")) && !ynode_string(v, file, "generate.dir", d, &s)) {
			ci->dir = config_resolve_path(file, s);
			ci->cert_file = fsutil_join(ci->dir, "ca.crt");
			ci->key_file = fsutil_join(ci->dir, "ca.key");
		} else if (!v) {
			diags_add(d, file, gen->line, gen->col, "%s.generate: dir is required", what);
		}
	} else if (selfsigned) {
		ci->mode = CA_SELF_SIGNED;
	}
	if ((v = ynode_get(node, "duration")))
		ynode_duration(v, file, "duration", d, &ci->duration);
out:
	free(what);
	if (d->n > before) {
		ca_config_free(ci);
		return CS_EINVALID;
	}
	*priv = ci;
	return 0;
}

static void ca_check_spec(const struct issuer *is, const struct cert_spec *s, struct diags *d)
{
	if (s->validation)
		diags_add(d, s->file, s->line, s->col,
			  "certificate \"%s\": spec.validation does not apply to issuer %s (type ca)", s->name,
			  is->name);
}

static int ca_plan(const struct issuer *is, enum change_kind kind, const struct cert_spec *s,
		   const struct state_cert *rec, struct plan_steps *out)
{
	(void)is;
	(void)s;
	memset(out, 0, sizeof(*out));
	if (kind == CHANGE_REINSTALL ||
	    (kind == CHANGE_RESUME && rec && rec->step && !strcmp(rec->step, "reinstall"))) {
		out->steps[out->n++] = "reinstall";
		return 0;
	}
	if (kind == CHANGE_RESUME && rec && rec->step && !strcmp(rec->step, "install")) {
		out->steps[out->n++] = "install";
		return 0;
	}
	out->steps[out->n++] = "issue";
	out->steps[out->n++] = "install";
	return 0;
}

/* Writes a new CA into ci->dir (generate mode): ECDSA P-256, ten years. */
static int ca_generate(struct ca_issuer *ci)
{
	struct crypto_key *key = NULL;
	struct crypto_cert *cert = NULL;
	struct buf kp = BUF_INIT, cp = BUF_INIT;
	char *cn = xasprintf("certsync %s CA", ci->name);
	int64_t now = util_now();
	int rc;

	if ((rc = fsutil_mkdir_p(ci->dir, 0700)) || (rc = crypto_key_generate(CRYPTO_ECDSA, 256, &key)) ||
	    (rc = crypto_ca_create(key, cn, now - 3600, now + CA_ROOT_LIFETIME, &cert)) ||
	    (rc = crypto_key_to_pem(key, &kp)) || (rc = crypto_cert_to_pem(cert, &cp)))
		goto out;
	/* Certificate first: a crash before the key is written just generates again next time. */
	if ((rc = fsutil_write_atomic(ci->cert_file, cp.data, cp.len, 0644)) ||
	    (rc = fsutil_write_new(ci->key_file, kp.data, kp.len, 0600)))
		goto out;
	log_info("issuer %s: generated a new CA in %s", ci->name, ci->dir);
out:
	free(cn);
	buf_wipe(&kp);
	buf_free(&cp);
	crypto_key_free(key);
	crypto_cert_free(cert);
	return rc;
}

/* Loads the CA certificate chain and key once per run. */
static int ca_load(struct ca_issuer *ci)
{
	struct buf kp = BUF_INIT, cp = BUF_INIT;
	struct crypto_cert **certs = NULL;
	size_t n = 0;
	struct stat st;
	int rc = 0;

	if (ci->loaded || ci->mode == CA_SELF_SIGNED)
		return 0;
	if (ci->mode == CA_GENERATE && !fsutil_exists(ci->key_file) && (rc = ca_generate(ci)))
		goto out;
	if (stat(ci->key_file, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
		rc = cs_error(CS_EINVALID,
			      "issuer %s: CA key %s is readable by group or others (mode %04o); chmod 600 it", ci->name,
			      ci->key_file, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if ((rc = fsutil_read_file(ci->key_file, CA_MAX_PEM, &kp)) ||
	    (rc = fsutil_read_file(ci->cert_file, CA_MAX_PEM, &cp))) {
		rc = cs_error(rc == CS_ENOTFOUND ? CS_EINVALID : rc, "issuer %s: %s", ci->name, cs_errmsg());
		goto out;
	}
	if ((rc = crypto_key_from_pem(kp.data, kp.len, ci->key_file, &ci->ca_key)) ||
	    (rc = crypto_certs_from_pem(cp.data, cp.len, ci->cert_file, &certs, &n)))
		goto out;
	if (!crypto_cert_matches_key(certs[0], ci->ca_key)) {
		rc = cs_error(CS_EINVALID, "issuer %s: %s does not match the key %s", ci->name, ci->cert_file,
			      ci->key_file);
		goto out;
	}
	/* certFile: the signing CA first, then any intermediates up to the root; ca.crt gets the last. */
	buf_init(&ci->chain, 0);
	buf_init(&ci->root, 0);
	for (size_t i = 0; i + 1 < n; i++)
		crypto_cert_to_pem(certs[i], &ci->chain);
	crypto_cert_to_pem(certs[n - 1], &ci->root);
	ci->ca = certs[0];
	certs[0] = NULL;
	ci->loaded = 1;
out:
	if (rc) {
		crypto_key_free(ci->ca_key);
		ci->ca_key = NULL;
	}
	crypto_certs_free(certs, n);
	buf_wipe(&kp);
	buf_free(&cp);
	return rc;
}

static enum crypto_alg ca_alg(enum key_alg a)
{
	return a == KEYALG_RSA ? CRYPTO_RSA : CRYPTO_ECDSA;
}

/* The key for this issuance: the installed one when rotation is Never and it still fits, else a new one. */
static int ca_key(struct step_ctx *ctx, struct crypto_key **out)
{
	const struct cert_spec *s = ctx->spec;
	struct buf kp = BUF_INIT;
	enum crypto_alg alg;
	int size;

	if (s->rotation == ROTATE_NEVER && engine_installed_key(ctx, &kp) == 0 &&
	    crypto_key_from_pem(kp.data, kp.len, "installed key", out) == 0) {
		crypto_key_describe(*out, &alg, &size);
		buf_wipe(&kp);
		if (alg == ca_alg(s->key_alg) && size == s->key_size)
			return 0;
		crypto_key_free(*out);
		*out = NULL;
	}
	buf_wipe(&kp);
	return crypto_key_generate(ca_alg(s->key_alg), s->key_size, out);
}

/* OpenSSL's names for the manifest's subject attributes (enum subject_attr) and usages (enum usage). */
static const char *const ca_subject_attrs[SUBJ__MAX] = {"C",	      "ST", "L",  "street",
							"postalCode", "O",  "OU", "serialNumber"};
static const char *const ca_usages[USAGE__MAX] = {
	"digitalSignature",
	"nonRepudiation",
	"keyEncipherment",
	"keyAgreement",
	"dataEncipherment",
	"keyCertSign",
	"cRLSign",
	"encipherOnly",
	"decipherOnly",
	"anyExtendedKeyUsage",
	"serverAuth",
	"clientAuth",
	"codeSigning",
	"emailProtection",
	"ipsecEndSystem",
	"ipsecTunnel",
	"ipsecUser",
	"timeStamping",
	"OCSPSigning",
	"msSGC",
	"nsSGC",
};

/* "critical,a,b" (key usages) and "c,d" (extended) for the manifest's usages; isCA adds cert sign as cert-manager does.
 */
static void ca_usage_text(const struct cert_spec *s, struct buf *ku, struct buf *eku)
{
	unsigned u = s->usages | (s->is_ca ? 1u << USAGE_CERT_SIGN : 0);

	for (int i = 0; i < USAGE__MAX; i++) {
		struct buf *b = i < USAGE_FIRST_EXTENDED ? ku : eku;

		if (!(u & (1u << i)))
			continue;
		if (b == ku && !b->len)
			buf_puts(b, "critical");
		if (b->len)
			buf_puts(b, ",");
		buf_puts(b, ca_usages[i]);
	}
}

/* The manifest as a crypto profile (strings borrowed from s, ku and eku). */
static void ca_profile(const struct cert_spec *s, struct crypto_profile *p, const char **attrs, const char **vals,
		       struct buf *ku, struct buf *eku)
{
	memset(p, 0, sizeof(*p));
	p->cn = s->common_name;
	p->dns = (const char *const *)s->dns_names;
	p->n_dns = s->n_dns;
	p->ips = (const char *const *)s->ips;
	p->n_ips = s->n_ips;
	p->uris = (const char *const *)s->uris;
	p->n_uris = s->n_uris;
	p->emails = (const char *const *)s->emails;
	p->n_emails = s->n_emails;
	for (size_t i = 0; i < s->n_subject; i++) {
		attrs[i] = ca_subject_attrs[s->subject[i].attr];
		vals[i] = s->subject[i].value;
	}
	p->subject_attrs = attrs;
	p->subject_values = vals;
	p->n_subject = s->n_subject;
	p->is_ca = s->is_ca;
	p->path_len = s->path_len;
	if (s->usages) {
		ca_usage_text(s, ku, eku);
		p->key_usage = ku->data ? ku->data : ""; /* usages written: exactly those, nothing by default */
		p->ext_key_usage = eku->data ? eku->data : "";
	}
}

static int ca_issue(struct step_ctx *ctx)
{
	struct ca_issuer *ci = ctx->issuer->priv;
	const struct cert_spec *s = ctx->spec;
	struct crypto_key *key = NULL;
	struct crypto_cert *leaf = NULL;
	struct buf ku = BUF_INIT, eku = BUF_INIT;
	const char **attrs = xcalloc(ctx->spec->n_subject + 1, sizeof(*attrs));
	const char **vals = xcalloc(ctx->spec->n_subject + 1, sizeof(*vals));
	struct crypto_profile prof;
	int64_t lifetime = s->duration ? s->duration : ci->duration;
	int64_t nb = ctx->now - 60, na = ctx->now + lifetime;
	int rc;

	pthread_mutex_lock(&ci->mu);
	rc = ca_load(ci);
	pthread_mutex_unlock(&ci->mu);
	if (rc && rc != CS_ETRANSIENT)
		ctx->fail_class = STATE_FAIL_CONFIG; /* the CA's files: the operator's to fix, then retried */
	if (rc || (rc = ca_key(ctx, &key)))
		goto out;
	ca_profile(s, &prof, attrs, vals, &ku, &eku);
	if ((rc = crypto_issue(ci->mode == CA_SELF_SIGNED ? NULL : ci->ca, ci->ca_key, key, &prof, nb, na, &leaf)))
		goto out;
	material_wipe(&ctx->mat);
	material_init(&ctx->mat);
	if ((rc = crypto_cert_to_pem(leaf, &ctx->mat.cert)) || (rc = crypto_key_to_pem(key, &ctx->mat.key)))
		goto out;
	if (ci->mode == CA_SELF_SIGNED) {
		rc = crypto_cert_to_pem(leaf, &ctx->mat.ca);
	} else {
		buf_append(&ctx->mat.cert, ci->chain.data ? ci->chain.data : "", ci->chain.len);
		buf_append(&ctx->mat.ca, ci->root.data, ci->root.len);
	}
out:
	buf_free(&ku);
	buf_free(&eku);
	free(attrs);
	free(vals);
	crypto_key_free(key);
	crypto_cert_free(leaf);
	return rc;
}

static int ca_step(struct step_ctx *ctx, enum step_status *status)
{
	const char *step = ctx->rec->step;
	int rc;

	if (util_streq(step, "issue")) {
		if ((rc = ca_issue(ctx)))
			return rc;
		state_str_set(&ctx->rec->step, "install");
		*status = STEP_CONTINUE;
		return 0;
	}
	if (util_streq(step, "reinstall")) {
		/* Lost outputs: the same certificate and key, never a silent rotation. */
		rc = engine_reinstall(ctx);
		if (rc == CS_ENOTFOUND) {
			log_emit(LV_WARN, &ctx->log, "%s (a record from an older certsync?); issuing a new certificate",
				 cs_errmsg());
			state_str_set(&ctx->rec->step, "issue");
			*status = STEP_CONTINUE;
			return 0;
		}
		if (rc)
			return rc;
		*status = STEP_DONE;
		return 0;
	}
	if (util_streq(step, "install")) {
		if (!material_present(&ctx->mat) && engine_pending_material(ctx)) {
			/* Resumed after a crash: the key was only in memory. Issuing again costs nothing. */
			state_str_set(&ctx->rec->step, "issue");
			*status = STEP_CONTINUE;
			return 0;
		}
		if ((rc = engine_install(ctx)))
			return rc;
		*status = STEP_DONE;
		return 0;
	}
	return cs_error(CS_EINVALID, "%s: the ca issuer has no step \"%s\"", ctx->rec->name, step ? step : "");
}

/* validate: the CA files load and the key matches (a CA still to be generated is fine); never writes. */
static void ca_check(const struct issuer *is, int online, struct provider_check *out)
{
	struct ca_issuer *ci = is->priv;

	(void)online;
	if (ci->mode == CA_SELF_SIGNED) {
		provider_check_note(out, "self-signed certificates");
		return;
	}
	if (ci->mode == CA_GENERATE && !fsutil_exists(ci->key_file)) {
		provider_check_note(out, "no CA yet: apply generates one in %s", ci->dir);
		return;
	}
	pthread_mutex_lock(&ci->mu);
	if (ca_load(ci))
		provider_check_problem(out, "%s", cs_errmsg());
	else
		provider_check_note(out, "CA %s loads and matches %s", ci->cert_file, ci->key_file);
	pthread_mutex_unlock(&ci->mu);
}

const struct provider_ops provider_ca = {
	.type = "ca",
	.config_parse = ca_config_parse,
	.config_free = ca_config_free,
	.check_spec = ca_check_spec,
	.x509_fields = (1u << XF__MAX) - 1, /* every field: the built-in CA signs what the manifest says */
	.plan = ca_plan,
	.step = ca_step,
	.refresh = NULL,
	.release = NULL,
	.check = ca_check,
};
