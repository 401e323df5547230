/*
 * State: the recorded truth of what certsync did (DESIGN §3). One JSON
 * document (jansson, owned by state/state_json.c) behind a small backend
 * interface; the local file backend writes atomically, keeps a backup, holds
 * an flock for a whole apply and journals every step.
 */
#ifndef CS_STATE_STATE_H
#define CS_STATE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "../util/buf.h"

#define STATE_VERSION 1
#define STATE_MAX_BYTES (256u * 1024 * 1024)
#define STATE_HISTORY_MAX 10
#define STATE_WEBHOOK_IDS_MAX 1000
#define STATE_MAX_TOKENS 200

enum cert_phase {
	PHASE_PENDING, /* steps remain (state_cert.step says which) */
	PHASE_READY,   /* installed and in sync */
	PHASE_FAILED,  /* a step failed permanently; needs a spec change or --retry-failed */
	PHASE__MAX
};

const char *state_phase_name(enum cert_phase p);
int state_phase_parse(const char *s, enum cert_phase *out);

/*
 * Failure classes (why a certificate's last attempt failed), recorded in
 * state_cert.failure_class. They decide what retries it: a configuration
 * failure is retried on the next apply/pass (nothing was bought), a transient
 * one with backoff, a rejection waits for a manifest change or an explicit
 * retry, a verification failure never installs and never buys by itself.
 */
#define STATE_FAIL_CONFIG "config"	       /* configuration or credentials: env var, file, key mode, 401/403 */
#define STATE_FAIL_TRANSIENT "transient"       /* 5xx, timeouts, 429, local I/O such as ENOSPC */
#define STATE_FAIL_REJECTED "rejected"	       /* the provider refused this manifest (4xx validation) */
#define STATE_FAIL_VERIFICATION "verification" /* the certificate got does not match the manifest/key/dates/chain */

struct state_kv {
	char *key;
	char *value;
};

/* A validation token placed somewhere that must be removed afterwards. */
struct state_token {
	char *method;	/* "dns-txt-token", "http-token" */
	char *name;	/* the DNS name or host it validates */
	char *location; /* record FQDN or file path */
	char *ref;	/* provider reference (zone record id), may be NULL */
	char *issuer;	/* the DNS driver's issuer name, may be NULL */
	int64_t placed_at;
};

struct state_event {
	int64_t time;
	char *what;
};

/* Signature of an output file at install: a cheap "unchanged?" check before hashing. */
struct state_filesig {
	int64_t size;
	int64_t mtime_ns;
	int64_t ino;
};

#define STATE_OUT_FILES 3 /* tls.crt, tls.key, ca.crt */

struct state_cert {
	char *name;
	char *issuer;	   /* config issuer name */
	char *provider;	   /* provider type ("ca", "dnsimple", ...) */
	char *spec_hash;   /* cert_spec.hash the current certificate was made from */
	char *target_hash; /* cert_spec.hash the change in progress works towards (NULL when ready) */
	char *output_dir;  /* relative to the output root */
	enum cert_phase phase;
	char *change;	  /* change in progress ("create", "renew", ...), NULL when ready */
	char *step;	  /* next step to run, NULL when ready */
	int attempts;	  /* failed tries of the current step */
	int64_t next_try; /* do not retry before (unix s), 0 = now */
	struct state_kv *ids;
	size_t n_ids; /* provider-owned data: ids, intents (sorted by key) */
	char *serial;
	int64_t not_before, not_after;
	char *fingerprint; /* SHA-256 of the installed leaf (hex) */
	char *out_hash;	   /* SHA-256 over the installed output files' contents */
	struct state_filesig out_sig[STATE_OUT_FILES];
	char *out_generation; /* name of the published directory behind the symlink */
	struct state_token *tokens;
	size_t n_tokens;
	char *last_error;
	int64_t last_error_time;
	char *failure_class; /* why the last attempt failed: STATE_FAIL_* (NULL when it did not) */
	int64_t last_success;
	struct state_event *history; /* n_history events, oldest first (state_cert_event makes room) */
	size_t n_history;
	/*
	 * Internal to state/: the snapshot memory some of this record's strings
	 * (and the record itself) live in, NULL when every part is malloc'd. The
	 * setters above know; code outside state/ only changes strings through
	 * them (state_str_set, state_cert_set_id, ...), never with free().
	 */
	const struct state_arena *arena;
};

struct state {
	int version;
	char lineage[37];
	uint64_t serial;
	char *source_url, *source_ref, *source_commit;
	/* certificates: hash map by name (internal) */
	struct state_map *certs;
	/* per-issuer account data (never secrets): issuer name -> kv list */
	struct state_account *accounts;
	size_t n_accounts;
	/* recently seen webhook request identifiers, oldest first, bounded */
	char **webhook_ids;
	size_t n_webhook_ids;
};

/* A new empty state with a fresh lineage and serial 0. */
struct state *state_new(void);
void state_free(struct state *st);

void state_set_source(struct state *st, const char *url, const char *ref, const char *commit);

/* Certificate records. Names are unique. */
struct state_cert *state_cert_get(const struct state *st, const char *name);
struct state_cert *state_cert_put(struct state *st, const char *name); /* get or create (phase PENDING) */
int state_cert_remove(struct state *st, const char *name);	       /* CS_ENOTFOUND if absent */
/* Renames a record (state mv): CS_ENOTFOUND without from, CS_ECONFLICT when to exists. */
int state_cert_rename(struct state *st, const char *from, const char *to);
size_t state_cert_count(const struct state *st);
/* Records sorted by name; the array is the caller's to free (not the records). */
struct state_cert **state_cert_list(const struct state *st, size_t *n);

/* Provider-owned key/value data on a record. get returns NULL when absent; set(NULL) deletes. */
const char *state_cert_id(const struct state_cert *c, const char *key);
/* The id key as unix seconds (a positive decimal integer), 0 when absent or not one. */
int64_t state_cert_id_time(const struct state_cert *c, const char *key);
void state_cert_set_id(struct state_cert *c, const char *key, const char *value);

/* Appends to the record's bounded history (drops the oldest). */
void state_cert_event(struct state_cert *c, int64_t when, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Sets/clears last_error (and its time). */
void state_cert_set_error(struct state_cert *c, int64_t when, const char *msg);

/* Tokens. add copies the strings; remove by index keeps order. */
void state_cert_add_token(struct state_cert *c, const struct state_token *t);
void state_cert_remove_token(struct state_cert *c, size_t i);

/* Sets a string field (frees the old value, copies the new; NULL clears). */
void state_str_set(char **field, const char *value);

/* Deep copy of a record (for plan-time snapshots). */
struct state_cert *state_cert_clone(const struct state_cert *c);
void state_cert_free(struct state_cert *c);

/* Per-issuer account data. */
const char *state_account_get(const struct state *st, const char *issuer, const char *key);
void state_account_set(struct state *st, const char *issuer, const char *key, const char *value);

/* Webhook dedupe: 1 if id was seen (and records it when not), bounded to STATE_WEBHOOK_IDS_MAX. */
int state_webhook_seen(struct state *st, const char *id);

/* JSON encoding (stable key order, certificates sorted by name). */
int state_to_json(const struct state *st, struct buf *out);
/* One record as a compact JSON object (journal lines, `state show`). */
int state_cert_to_json(const struct state_cert *c, int pretty, struct buf *out);
/*
 * Decodes a state document. `origin` names it in messages. Unknown version,
 * corrupt JSON and missing/mistyped fields are CS_EINVALID with a message
 * ("state.json:12:3: ..."); the caller adds the backup hint.
 */
int state_from_json(const char *data, size_t len, const char *origin, struct state **out);

/*
 * Decodes one record (what state_cert_to_json writes) named name. origin
 * names where it was read in messages ("<origin>: certificates."www".phase:
 * expected ..."); CS_EINVALID for corrupt JSON and missing/mistyped fields.
 * *out is the caller's (state_cert_free).
 */
int state_cert_from_json(const char *data, size_t len, const char *origin, const char *name, struct state_cert **out);

/* ---------- backends ---------- */

struct state_backend;

struct state_backend_ops {
	const char *name;
	/* Takes the exclusive lock for `operation` ("apply", "run", "state rm"); CS_ELOCKED names the holder. */
	int (*lock)(struct state_backend *be, const char *operation);
	void (*unlock)(struct state_backend *be);
	/* Loads the state (journal replayed). A missing state is a fresh one, not an error. */
	int (*load)(struct state_backend *be, struct state **out);
	/* Writes the whole state atomically (serial + 1), keeps the previous as a backup, empties the journal. */
	int (*save)(struct state_backend *be, struct state *st);
	/*
	 * Durably records one certificate's new record (or its removal when rec is
	 * NULL) before returning (serial + 1). Cost follows the record, not the state.
	 */
	int (*journal)(struct state_backend *be, struct state *st, const char *name, const struct state_cert *rec);
	/*
	 * Durably records st's source (url, ref, commit, already set in st and
	 * within state_source_check's bounds) before returning (serial + 1),
	 * without writing the records: cost follows the source. A backend may
	 * do a full save instead when that is due (see state_note_source).
	 * NULL: state_note_source saves.
	 */
	int (*note_source)(struct state_backend *be, struct state *st);
	/*
	 * After a command's last write: keeps a local decoded copy of st as
	 * written (st must be what the last save or journal wrote), so the next
	 * process's load need not read every record. Never an error: without
	 * it, the next load is only slower. NULL: nothing to keep (the file
	 * backend writes its snapshot with every save).
	 */
	void (*keep_snapshot)(struct state_backend *be, const struct state *st);
	void (*free)(struct state_backend *be);
	/*
	 * Shared backends (postgres). The file backend implements leading (its
	 * flock is held for the whole operation) and leaves the rest NULL.
	 *
	 * leading: 1 while the lock taken by lock() is surely still this
	 * process's: for postgres, the lease was last renewed (counting from the
	 * start of that renewal, by the monotonic clock) less than the lease
	 * duration ago. 0 from the moment a renewal is overdue: no provider call,
	 * no paid intent, no write may start then.
	 */
	int (*leading)(struct state_backend *be);
	/* The fencing token of the lease held (increases with every new holder); 0 when not leading. */
	uint64_t (*epoch)(struct state_backend *be);
	/*
	 * Registers fn(arg), called from the backend's listener thread
	 * (LISTEN/NOTIFY) whenever another process commits a change or kicks
	 * (below), and when the listener reconnects after losing the server (a
	 * change may have been missed): the daemon wakes and refreshes. fn must
	 * be async-safe in spirit: set a flag, write a pipe. NULL unregisters.
	 */
	void (*on_change)(struct state_backend *be, void (*fn)(void *arg), void *arg);
	/* A follower asks the leader to reconcile certificate `name` now (it received that webhook). */
	int (*kick)(struct state_backend *be, const char *name);
	/* The names kicked since the last call (NOTIFY payloads; caller frees each and the array). */
	int (*take_kicks)(struct state_backend *be, char ***names, size_t *n);
	/*
	 * 1 when, since the last call, another process committed a change (not
	 * a kick) or the listener reconnected (one may have been missed). The
	 * leader alone writes: for it such a commit is an edit by hand (schema
	 * version 3's triggers) or a writer it fenced out, and what it holds in
	 * memory is stale.
	 */
	int (*take_foreign)(struct state_backend *be);
	/*
	 * Brings st up to date with the stored state: records changed or removed
	 * since it was loaded or last refreshed (only those are read), header
	 * fields, serial. *changed (caller frees each and the array) gets the
	 * names of the records that changed, *n_changed their count.
	 */
	int (*refresh)(struct state_backend *be, struct state *st, char ***changed, size_t *n_changed);
	/* Who holds the lock now, for messages and /readyz: "run on host-a (replica r1, pid 7) since …"; "" when
	 * nobody. */
	int (*holder)(struct state_backend *be, char *desc, size_t n);
};

struct state_backend {
	const struct state_backend_ops *ops;
};

/*
 * The local file backend: state at path (mode 0600), backup at
 * path + ".backup", journal at path + ".journal", lock at path + ".lock".
 */
int state_file_open(const char *path, struct state_backend **out);

/*
 * The file backend's journal size from which state_note_source does a full
 * save (folding the journal into state.json and emptying it) instead of
 * appending. A source line is ~120 bytes (a local path) to ~250 (a long
 * URL), so a daemon that follows only no-op commits folds every 250-550 of
 * them: one full save (~150-250 ms of CPU at 10,000 certificates) spread
 * over them is under 1 ms each, and every load reads and replays at most
 * 64 KiB of lines over the snapshot (measured: 0.3 ms for 538 lines). Record
 * lines of an interrupted apply count too: a fold takes them in as well.
 */
#define STATE_FILE_JOURNAL_FOLD (64u * 1024)

/*
 * 1 when the state file at path is missing but its backup (path +
 * ".backup") is there: a deleted or lost state, not a first run. desc gets
 * a description of the backup (lineage, serial, certificates) for messages.
 * Plans say so, and apply refuses paid changes until the operator chooses
 * (state restore, or apply --ignore-backup).
 */
int state_file_lost(const char *path, char *desc, size_t n);

/*
 * Puts the backup back as the state (the caller holds the lock). The backup
 * is decoded first, so a damaged one is refused with its error.
 * CS_ECONFLICT when the state exists, CS_ENOTFOUND when there is no backup.
 */
int state_file_restore(struct state_backend *be);

/* Wrappers over ops (NULL-safe free). */
int state_lock(struct state_backend *be, const char *operation);
void state_unlock(struct state_backend *be);
int state_load(struct state_backend *be, struct state **out);
int state_save(struct state_backend *be, struct state *st);
int state_journal(struct state_backend *be, struct state *st, const char *name, const struct state_cert *rec);
/*
 * "The source is now at commit": sets st's source (state_set_source) and
 * records it durably, serial + 1, at the cost of the source and not of the
 * state: the file backend appends a source line to its journal (replayed by
 * every load, folded by the next full save), postgres updates the header row
 * alone. For a commit that changes no certificate (a pass or an apply with
 * nothing to do). What else st holds unsaved is NOT recorded by the cheap
 * path: callers with other unsaved changes call state_save (or keep them
 * pending as before).
 *
 * It is a full state_save instead (recording everything in st) when the
 * backend has no cheaper way, when the file backend has no state file yet
 * (a journal alone would be replayed over a fresh lineage) or its journal
 * has grown past STATE_FILE_JOURNAL_FOLD bytes, and when url, ref or commit
 * are outside state_source_check's bounds (a journal line must read back).
 * On failure st holds the new source in memory only: a later state_save
 * records it.
 */
int state_note_source(struct state_backend *be, struct state *st, const char *url, const char *ref, const char *commit);
/* After the last write of a command (apply, run stopping): see ops->keep_snapshot. */
void state_keep_snapshot(struct state_backend *be, const struct state *st);
void state_backend_free(struct state_backend *be);
/* 1 while the lock is surely held (see ops->leading); file backend: while locked. */
int state_leading(struct state_backend *be);
/* The lease's fencing token, 0 when not leading or the backend has none. */
uint64_t state_epoch(struct state_backend *be);
/* 1 when the backend is shared between processes (refresh/wait_change exist). */
int state_shared(const struct state_backend *be);
/* ops->on_change; a no-op when the backend has none. */
void state_on_change(struct state_backend *be, void (*fn)(void *arg), void *arg);
/* ops->kick; CS_ERROR when the backend has none. */
int state_kick(struct state_backend *be, const char *name);
/* ops->take_kicks; none when the backend has none. */
int state_take_kicks(struct state_backend *be, char ***names, size_t *n);

/* ops->take_foreign; 0 when the backend has none. */
int state_take_foreign(struct state_backend *be);
/* ops->refresh; a no-op (nothing changed) when the backend has none. */
int state_refresh(struct state_backend *be, struct state *st, char ***changed, size_t *n_changed);
/* ops->holder; "" when the backend has none. */
int state_holder(struct state_backend *be, char *desc, size_t n);

#endif
