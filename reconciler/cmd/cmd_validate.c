/*
 * certsync validate: check the config and the manifests at the ref, touch
 * nothing. --credentials adds every referenced env var and file (present,
 * not group/world readable), offline except for the postgres state backend
 * (it connects and checks state.encryptionKey); --online adds each issuer's
 * cheapest authenticated provider call. Without either no socket is opened.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../../state/keystore.h"
#include "../../util/err.h"
#include "../backends.h"
#include "../provider.h"
#include "../source/gitsrc.h"
#include "cmd.h"

enum { OPT_CREDENTIALS = OPT__GLOBAL_END, OPT_ONLINE };

/* One line per finding: "ok" on stdout, problems on stderr. Returns the number of problems. */
static size_t validate_report(const char *who, const struct provider_check *c)
{
	for (size_t i = 0; i < c->n_problems; i++)
		fprintf(stderr, "error: %s\n", c->problems[i]);
	if (!c->n_problems)
		printf("%s: ok%s%s\n", who, c->note ? ": " : "", c->note ? c->note : "");
	return c->n_problems;
}

/*
 * The postgres backend: connects and opens the key store, which checks
 * state.encryptionKey against the store's key check value. Returns the
 * number of problems (0 or 1).
 */
static size_t validate_state(const struct config *cfg)
{
	struct keystore *ks = NULL;
	char desc[512];

	if (cfg->state.backend != STATE_BACKEND_POSTGRES)
		return 0;
	backends_describe(cfg, desc, sizeof(desc));
	cs_error_clear();
	if (backends_open_keystore(cfg, &ks)) {
		fprintf(stderr, "error: state (%s): %s\n", desc, cs_errmsg());
		return 1;
	}
	keystore_close(ks);
	printf("state (%s): ok: connected; state.encryptionKey opens the key store\n", desc);
	return 0;
}

/*
 * The source's references, each only where it is used (a local path needs no
 * source.token): secrets must be readable and private, public key material
 * (source.knownHosts, source.verify.keys) readable.
 */
static int validate_source_refs(const struct config *cfg, struct provider_check *c)
{
	const char *repo = cfg->source.repo ? cfg->source.repo : "";
	struct buf b = BUF_INIT;
	int n = cfg->source.receiver_secret.kind != CRED_NONE || cfg->source.verify.on;

	if (!strncasecmp(repo, "https://", 8) || !strncasecmp(repo, "http://", 7)) {
		provider_check_cred(c, &cfg->source.token, "source.token");
		n += cfg->source.token.kind != CRED_NONE;
	}
	if (gitsrc_is_ssh_url(repo)) {
		n++;
		provider_check_cred(c, &cfg->source.ssh_key, "source.sshKey");
		provider_check_cred(c, &cfg->source.ssh_passphrase, "source.sshKeyPassphrase");
		if (config_public_read(&cfg->source.known_hosts, "source.knownHosts", &b))
			provider_check_problem(c, "%s", cs_errmsg());
		buf_free(&b);
	}
	if (cfg->source.verify.on && config_public_read(&cfg->source.verify.keys, "source.verify.keys", &b))
		provider_check_problem(c, "%s", cs_errmsg());
	buf_free(&b);
	provider_check_cred(c, &cfg->source.receiver_secret, "source.receiverSecret");
	return n;
}

/* The config's own references (source, server.webhookSecret), the state's database, then each issuer's check. */
static size_t validate_credentials(const struct config *cfg, int online)
{
	struct provider_check c;
	char who[200];
	size_t problems = 0;
	int checked;

	memset(&c, 0, sizeof(c));
	checked = validate_source_refs(cfg, &c);
	provider_check_cred(&c, &cfg->server.webhook_secret, "server.webhookSecret");
	if (checked || cfg->server.webhook_secret.kind != CRED_NONE)
		problems += validate_report("source and server credentials", &c);
	provider_check_free(&c);
	problems += validate_state(cfg);
	for (size_t i = 0; i < cfg->n_issuers; i++) {
		const struct issuer *is = &cfg->issuers[i];

		if (!is->priv || !is->ops->check)
			continue;
		memset(&c, 0, sizeof(c));
		cs_error_clear();
		is->ops->check(is, online, &c);
		snprintf(who, sizeof(who), "issuer %s (%s)", is->name, is->ops->type);
		problems += validate_report(who, &c);
		provider_check_free(&c);
	}
	return problems;
}

static int validate_run(struct cmd_globals *g, int argc, char **argv)
{
	static const struct option opts[] = {CMD_GLOBAL_OPTIONS,
					     {"credentials", no_argument, NULL, OPT_CREDENTIALS},
					     {"online", no_argument, NULL, OPT_ONLINE},
					     {NULL, 0, NULL, 0}};
	struct config *cfg = NULL;
	struct cmd_source src;
	int opt, rc, status = EXIT_FAIL, credentials = 0, online = 0;
	size_t problems = 0;

	memset(&src, 0, sizeof(src));
	optind = 1;
	while ((opt = cmd_getopt(&cmd_validate, argc, argv, opts)) != -1) {
		int r = cmd_global_opt(g, &cmd_validate, opt, optarg);

		if (r < 0)
			return EXIT_OK;
		if (r)
			continue;
		if (opt == OPT_CREDENTIALS)
			credentials = 1;
		else if (opt == OPT_ONLINE)
			credentials = online = 1;
		else
			return EXIT_USAGE; /* cmd_getopt said why */
	}
	if (optind < argc)
		return cmd_usage_error(&cmd_validate, "unexpected argument \"%s\"", argv[optind]);
	cmd_setup_logging(g);
	if ((rc = cmd_load_config(g, &cfg)))
		goto out;
	/* The credentials are checked even when the source cannot be read: every problem in one run. */
	if ((rc = cmd_open_source(cfg, NULL, &src))) {
		if (credentials)
			validate_credentials(cfg, online);
		goto out;
	}
	diags_print(&src.desired.diags, stdout);
	if (src.desired.diags.n)
		fprintf(stderr,
			"error: %zu problem%s in the manifests at %.12s (%zu valid certificate%s in %zu file%s)\n",
			src.desired.diags.n, src.desired.diags.n == 1 ? "" : "s", src.commit, src.desired.n_specs,
			src.desired.n_specs == 1 ? "" : "s", src.desired.n_files, src.desired.n_files == 1 ? "" : "s");
	else
		printf("%zu certificate%s in %zu file%s at %.12s: valid\n", src.desired.n_specs,
		       src.desired.n_specs == 1 ? "" : "s", src.desired.n_files, src.desired.n_files == 1 ? "" : "s",
		       src.commit);
	fflush(stdout);
	if (credentials && (problems = validate_credentials(cfg, online)))
		fprintf(stderr, "error: %zu credential or provider problem%s%s\n", problems, problems == 1 ? "" : "s",
			online ? "" : " (checked offline)");
	if (!src.desired.diags.n && !problems)
		status = EXIT_OK;
out:
	cmd_source_free(&src);
	config_free(cfg);
	return status;
}

const struct cmd cmd_validate = {
	"validate",
	"Check the config and the manifests at the ref; change nothing. Exit 1 on any problem.\n"
	"  --credentials  also check every credential env var and file (present, mode 0600), offline;\n"
	"                 with state.backend postgres, connect and check state.encryptionKey\n"
	"  --online       --credentials, then each issuer's cheapest authenticated provider call\n"
	"                 (DNSimple whoami and the account id, DigiCert user/me; ca: the CA loads)",
	validate_run,
	"validate [--config FILE] [--ref REF] [--credentials | --online]",
};
