/* plan --target / apply --target: a plan cut down to some certificates (Terraform's resource targeting). */
#include <string.h>

#include "plan.h"
#include "render_int.h"

static int target_wanted(const char *name, char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(name, names[i]))
			return 1;
	return 0;
}

/* Keeps the wanted entries of v (in order) and frees the others; returns the new count. */
static size_t target_filter(struct plan_change *v, size_t len, char *const *names, size_t n)
{
	size_t kept = 0;

	for (size_t i = 0; i < len; i++) {
		if (!target_wanted(v[i].name, names, n)) {
			plan_change_clear(&v[i]);
			continue;
		}
		if (kept != i)
			v[kept] = v[i];
		kept++;
	}
	return kept;
}

void plan_keep_targets(struct plan *p, char *const *names, size_t n)
{
	p->n_changes = target_filter(p->changes, p->n_changes, names, n);
	p->n_failed = target_filter(p->failed, p->n_failed, names, n);
	/* The cap counts the targeted paid changes only: sorted by name, as planning assigned it. */
	memset(p->counts + 1, 0, sizeof(p->counts) - sizeof(p->counts[0]));
	p->paid = p->deferred = 0;
	for (size_t i = 0; i < p->n_changes; i++) {
		struct plan_change *c = &p->changes[i];

		p->counts[c->kind]++;
		if (!c->paid)
			continue;
		c->deferred = p->paid >= (size_t)p->max_paid;
		if (c->deferred)
			p->deferred++;
		else
			p->paid++;
	}
	plan_add_warning(p,
			 "resource targeting is in effect: only %zu certificate%s named by --target %s planned; "
			 "the plan may be incomplete. Targeting is for exceptional situations such as recovering from "
			 "errors, not for routine use: apply without --target to converge",
			 n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
}
