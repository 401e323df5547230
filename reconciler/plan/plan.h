/*
 * Plans: the pure diff of desired (manifests) × recorded (state) × observed
 * (outputs on disk, provider refresh) into changes, and their renderings
 * (text, JSON, Markdown). No I/O in the diff: same inputs, same plan.
 */
#ifndef CS_RECONCILER_PLAN_H
#define CS_RECONCILER_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "../../manifests/manifest.h"
#include "../../state/state.h"
#include "../../util/buf.h"
#include "../../util/diag.h"

#define PLAN_FORMAT_VERSION "1.2"
#define PLAN_MAX_STEPS 16

enum change_kind {
	CHANGE_NONE,
	CHANGE_CREATE,
	CHANGE_REPLACE,
	CHANGE_RENEW,
	CHANGE_RESUME,
	CHANGE_REINSTALL,
	CHANGE_REMOVE,
	CHANGE_ORPHAN, /* in state, not in manifests, and prune is off: reported, nothing done */
	CHANGE__MAX
};

const char *plan_change_name(enum change_kind k);
int plan_change_parse(const char *s, enum change_kind *out);

/*
 * What is on disk for a recorded certificate (observed before the diff).
 * OUTPUT_OK_BY_CONTENT: as installed, shown by the content because the
 * files' signatures moved (the output root copied or restored, a file
 * touched); apply and run record the new signatures (outputs_restamp).
 */
enum output_status { OUTPUT_OK, OUTPUT_MISSING, OUTPUT_ALTERED, OUTPUT_OK_BY_CONTENT, OUTPUT__MAX };

/* 1 when the outputs are as installed (OUTPUT_OK or OUTPUT_OK_BY_CONTENT). */
static inline int output_as_installed(enum output_status s)
{
	return s == OUTPUT_OK || s == OUTPUT_OK_BY_CONTENT;
}

/* Provider drift found by refresh (plan --refresh). */
struct plan_drift {
	const char *name;
	char *what;    /* "certificate 123 is gone at the provider" */
	int needs_new; /* the recorded certificate is unusable: plan a create */
};

struct plan_field_diff {
	char *field; /* "dnsNames" */
	char *text;  /* "+ api.example.com", "ECDSA 256 → RSA 2048" */
};

struct plan_change {
	char *name;
	enum change_kind kind;
	char *reason;	   /* human sentence: "dnsNames changed", "expires in 12d (renewBefore 30d)" */
	char *reason_code; /* machine: "spec_changed", "renewal_due", "output_missing", ... */
	char *issuer;
	char *provider;
	char *steps[PLAN_MAX_STEPS];
	size_t n_steps;
	int paid;      /* spends money */
	char *product; /* what is bought, for paid changes */
	int deferred;  /* paid, but beyond policy.maxPaidOrders: not applied this run */
	struct plan_field_diff *diffs;
	size_t n_diffs;
	struct label *labels;
	size_t n_labels; /* copies */
	char *file;
	int line; /* manifest location, when in manifests */
	/*
	 * A certificate whose last attempt failed: the failure class
	 * (STATE_FAIL_*, "unknown" for a record older than classes) and its
	 * last error. On a resume this is a retry; in plan.failed, a failure
	 * that apply leaves alone.
	 */
	char *failure_class;
	char *last_error;
	/* The provider's note on how it is done (plan_steps.detail: the ACME solver per name), or NULL. */
	char *detail;
};

/*
 * A renewal window the CA suggested for an installed certificate (ACME
 * Renewal Information, RFC 9773), shown by every plan format: the window,
 * the point chosen inside it, and when the CA is asked again.
 */
struct plan_window {
	char *name;
	int64_t start, end, at, next; /* unix seconds; next 0 when unknown */
};

/* What a paid change does, in every format: DNSimple (and a recovery lookup) may find the certificate already bought.
 */
#define PLAN_PAID_ACTION "purchase, or adopt a matching certificate if one exists"

struct plan {
	char *repo, *ref, *commit;
	char *base_commit;    /* PR plans: the merge base */
	char *applied_commit; /* the commit the state was last applied at, when known */
	int has_state;
	char lineage[37];
	uint64_t serial;
	struct plan_change *changes;
	size_t n_changes; /* sorted by name; CHANGE_NONE is only counted */
	size_t counts[CHANGE__MAX];
	size_t paid, deferred;
	int max_paid;
	struct diags errors; /* validation errors of the revision */
	char **warnings;
	size_t n_warnings;
	/*
	 * Failed certificates that apply leaves alone (rejected by the provider,
	 * or a certificate that failed verification) until their manifest
	 * changes or --retry-failed: listed with what to do, never applied.
	 * Sorted by name; kind is CHANGE_NONE, reason says what to do.
	 */
	struct plan_change *failed;
	size_t n_failed;
	/* Account-level side effects of applying (an AuthKey created, a webhook registered), one sentence each. */
	char **account_actions;
	size_t n_account_actions;
	/* Renewal windows of desired, installed certificates whose CA suggests one (ARI), by name. */
	struct plan_window *windows;
	size_t n_windows;
};

/* The provider side of planning: which steps a change takes. */
#define PLAN_DETAIL_MAX 512

struct plan_steps {
	const char *steps[PLAN_MAX_STEPS];
	size_t n;
	int paid;
	const char *product;
	/*
	 * The provider's note on how the change will be done, shown with it in
	 * every plan format (never a secret): the ACME solver per name
	 * ("www.example.com: http-01 webroot /var/www/acme; *.example.com:
	 * dns-01 via corpdns"). Empty when there is nothing to say.
	 */
	char detail[PLAN_DETAIL_MAX];
};

/* Resolves an issuer name to its step planner; returns 0 or CS_ENOTFOUND. Supplied by the caller. */
typedef int (*plan_steps_fn)(void *arg, const char *issuer, enum change_kind kind, const struct cert_spec *spec,
			     const struct state_cert *rec, const char **provider, struct plan_steps *out);

struct plan_input {
	struct cert_spec *const *desired;
	size_t n_desired;		   /* valid specs only */
	const struct state *state;	   /* may be NULL (no state) */
	const enum output_status *outputs; /* per recorded cert, same order as state_cert_list; NULL = not observed */
	struct state_cert *const *recorded;
	size_t n_recorded; /* state_cert_list(state) */
	const struct plan_drift *drift;
	size_t n_drift; /* sorted by name */
	int64_t now;
	int prune;
	int max_paid;
	int retry_failed;
	plan_steps_fn steps_fn;
	void *steps_arg;
	const char *repo, *ref, *commit;
};

/* Pure: builds the plan. The caller owns *out (plan_free). */
int plan_diff(const struct plan_input *in, struct plan **out);

/* A pull-request plan: the manifests at the merge base against those at head. */
struct plan_pr_input {
	struct cert_spec *const *base;
	size_t n_base; /* valid specs at the merge base, sorted by name */
	struct cert_spec *const *head;
	size_t n_head;		   /* valid specs at head, sorted by name */
	const struct state *state; /* optional: adds renewals due and pending work */
	int64_t now;
	int prune; /* removals are removes (else orphans) */
	int max_paid;
	plan_steps_fn steps_fn;
	void *steps_arg;
	const char *repo, *ref, *commit, *base_commit;
};

/*
 * Pure: creates, replaces (with field differences), output moves, removals
 * and renames (a removed and a created spec with the same hash) between two
 * revisions. Setting-only edits (renewBefore, autoRenew, rotationPolicy)
 * become warnings: nothing is issued for them.
 */
int plan_pr_diff(const struct plan_pr_input *in, struct plan **out);

/*
 * When renewal of rec is due given spec (renewBefore or 1/3 of the lifetime,
 * or the point chosen in the CA's suggested window when that is earlier:
 * plan_ari_window); 0 if unknown. A renewBefore of the whole lifetime or more is honoured once
 * per setting: the certificate issued under it (PLAN_ID_RENEW_BEFORE in its
 * ids) renews at 1/3 of its lifetime, else every pass would buy another one
 * that is due at once.
 */
int64_t plan_renewal_time(const struct cert_spec *spec, const struct state_cert *rec);

/* The renewal point of a certificate valid [not_before, not_after); honoured: issued under spec's renewBefore. */
int64_t plan_renewal_at(const struct cert_spec *spec, int64_t not_before, int64_t not_after, int honoured);

/* The ids key recording the renewBefore (seconds) a certificate was issued under. */
#define PLAN_ID_RENEW_BEFORE "renew_before"

/*
 * The renewal window a CA suggested (ARI) for the installed certificate, as
 * the ACME driver records it (the same keys as ACME_ID_ARI_* in
 * providers/acme.h): unix seconds. PLAN_ID_ARI_SERIAL names the certificate
 * they are about: they count only while it is the installed one (rec->serial).
 */
#define PLAN_ID_ARI_START "acme.ari.start"
#define PLAN_ID_ARI_END "acme.ari.end"
#define PLAN_ID_ARI_AT "acme.ari.at"
#define PLAN_ID_ARI_NEXT "acme.ari.next"
#define PLAN_ID_ARI_SERIAL "acme.ari.serial"

/*
 * A revoked certificate (certsync revoke records the serial it revoked):
 * while that serial is installed, plan replaces it (reason_code "revoked").
 */
#define PLAN_ID_REVOKED "revoked.serial"

/*
 * The renewal window recorded for rec's installed certificate: 1 with w
 * filled (name not set), 0 when there is none (or it is about another
 * certificate).
 */
int plan_ari_window(const struct state_cert *rec, struct plan_window *w);

/* Records in rec that its (newly installed) certificate was issued under spec's renewBefore. */
void plan_note_renew_before(struct state_cert *rec, const struct cert_spec *spec);

/* Field-level differences between two specs (PR plans and replace reasons). */
void plan_spec_diff(const struct cert_spec *a, const struct cert_spec *b, struct plan_field_diff **out, size_t *n);

void plan_add_warning(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plan_add_account_action(struct plan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void plan_free(struct plan *p);

/*
 * What fixes a failure of a class (STATE_FAIL_*): "fix the configuration or
 * credentials; …", "not retried: change the manifest, …". Never NULL.
 */
const char *plan_failure_advice(const char *fail_class);

/* 1 if the failure class is retried by the next apply without being asked (config, transient). */
int plan_failure_retried(const char *fail_class);

/*
 * Terraform's -target: keeps only the changes (and failed entries) of the
 * n names, recounts them, and lets paid changes deferred only by the
 * others' count go ahead. Adds Terraform's warning that targeting is for
 * exceptional use. The names are the caller's to check.
 */
void plan_keep_targets(struct plan *p, char *const *names, size_t n);

/* 1 if the plan would change anything (exit code 2 with --detailed-exitcode). */
int plan_has_changes(const struct plan *p);

/* Renderers. Text flags: colour (only ever asked for on a TTY), ASCII symbols instead of ↻. */
#define PLAN_TEXT_COLOR 1
#define PLAN_TEXT_ASCII 2
int plan_render_text(const struct plan *p, int flags, struct buf *out);
int plan_render_json(const struct plan *p, struct buf *out);
int plan_render_markdown(const struct plan *p, struct buf *out);
/* GitHub Actions: ::error/::warning/::notice workflow commands, then the ASCII text plan. */
int plan_render_github(const struct plan *p, struct buf *out);

/* Reads a plan written by plan_render_json (for `apply plan.json`). CS_EINVALID naming origin. */
int plan_from_json(const char *data, size_t len, const char *origin, struct plan **out);

#endif
