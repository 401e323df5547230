/* Command-line parsing shared by the subcommands: one error line per mistake, with "did you mean". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/util.h"
#include "cmd.h"

#define CMD_WORD_MAX 64

/* Levenshtein distance, capped: words longer than CMD_WORD_MAX are never "close". */
static size_t cmd_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[CMD_WORD_MAX + 1];

	if (la > CMD_WORD_MAX || lb > CMD_WORD_MAX)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

const char *cmd_suggest(const char *word, const char *const *cands, size_t n)
{
	const char *best = NULL;
	size_t best_d = (size_t)-1, len = strlen(word);

	if (!len)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		size_t d;

		if (!cands[i])
			continue;
		/* "--detail" for "--detailed-exitcode": a word the candidate starts with is the closest there is. */
		d = !strncmp(cands[i], word, len) ? 0 : cmd_distance(word, cands[i]);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	/* Close enough to be a typo: two edits, or a third of the word for long ones. */
	return best && best_d <= (len > 6 ? len / 3 : 2) ? best : NULL;
}

static const char *cmd_long_name(const struct option *opts, int val)
{
	for (size_t i = 0; opts[i].name; i++)
		if (opts[i].val == val)
			return opts[i].name;
	return "?";
}

/* The unknown or ambiguous long option "--word[=value]" at arg. */
static void cmd_bad_long(const struct cmd *c, const struct option *opts, const char *arg)
{
	const char *cands[128];
	char word[CMD_WORD_MAX + 1];
	size_t n = 0, n_prefix = 0, wl;
	const char *hit;

	snprintf(word, sizeof(word), "%s", arg + 2);
	word[strcspn(word, "=")] = '\0';
	wl = strlen(word);
	for (size_t i = 0; opts[i].name && n < sizeof(cands) / sizeof(cands[0]); i++) {
		cands[n++] = opts[i].name;
		n_prefix += wl && !strncmp(opts[i].name, word, wl);
	}
	if (n_prefix > 1) {
		fprintf(stderr, "error: option --%s of certsync %s is ambiguous:", word, c->name);
		for (size_t i = 0; i < n; i++)
			if (!strncmp(cands[i], word, wl))
				fprintf(stderr, " --%s", cands[i]);
		fputc('\n', stderr);
		return;
	}
	hit = cmd_suggest(word, cands, n);
	if (hit)
		fprintf(stderr, "error: unknown option --%s for certsync %s; did you mean --%s?\n", word, c->name, hit);
	else
		fprintf(stderr, "error: unknown option --%s for certsync %s (certsync help %s lists its options)\n",
			word, c->name, c->name);
}

int cmd_getopt(const struct cmd *c, int argc, char **argv, const struct option *opts)
{
	int opt, prev = optind;

	opterr = 0; /* getopt's own message would be a second, less useful line */
	opt = getopt_long(argc, argv, ":v", opts, NULL);
	if (opt != '?' && opt != ':')
		return opt;
	fflush(stdout);
	if (opt == ':')
		fprintf(stderr, "error: option %s%s of certsync %s needs a value\n", optopt > 255 ? "--" : "-",
			optopt > 255 ? cmd_long_name(opts, optopt) : (char[]){(char)optopt, 0}, c->name);
	else if (optopt > 255)
		fprintf(stderr, "error: option --%s of certsync %s takes no value\n", cmd_long_name(opts, optopt),
			c->name);
	else if (optopt)
		fprintf(stderr, "error: unknown option -%c for certsync %s (certsync help %s lists its options)\n",
			optopt, c->name, c->name);
	else
		cmd_bad_long(c, opts, argv[optind > prev ? optind - 1 : prev]);
	return CMD_OPT_BAD;
}

int cmd_target_add(const struct cmd *c, struct cmd_targets *t, char *name)
{
	if (t->n >= CMD_TARGETS_MAX)
		return cmd_usage_error(c, "at most %d --target options", CMD_TARGETS_MAX);
	t->v[t->n++] = name;
	return 0;
}

/* The closest name to word among the manifests and the state, or NULL. */
static const char *cmd_target_suggest(const char *word, const struct desired *d, const struct state *st)
{
	size_t n_rec = 0, n = 0;
	struct state_cert **recs = st ? state_cert_list(st, &n_rec) : NULL;
	const char **names = xcalloc(d->n_specs + n_rec + 1, sizeof(*names));
	const char *hit;

	for (size_t i = 0; i < d->n_specs; i++)
		names[n++] = d->specs[i]->name;
	for (size_t i = 0; i < n_rec; i++)
		names[n++] = recs[i]->name;
	hit = cmd_suggest(word, names, n);
	free(names);
	free(recs);
	return hit;
}

int cmd_target_plan(const struct cmd_targets *t, const struct desired *d, const struct state *st, struct plan *p)
{
	if (!t->n)
		return 0;
	for (size_t i = 0; i < t->n; i++) {
		int known = st && state_cert_get(st, t->v[i]);
		const char *hit;

		for (size_t k = 0; !known && k < d->n_specs; k++)
			known = !strcmp(d->specs[k]->name, t->v[i]);
		if (known)
			continue;
		hit = cmd_target_suggest(t->v[i], d, st);
		if (hit)
			return cmd_fail(
				"--target %s: no certificate of that name in the manifests or the state; did you "
				"mean %s?",
				t->v[i], hit);
		return cmd_fail("--target %s: no certificate of that name in the manifests or the state", t->v[i]);
	}
	plan_keep_targets(p, t->v, t->n);
	return 0;
}
