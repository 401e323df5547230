/*
 * Private to the git source (gitsrc.c: opening, remotes, fetching;
 * gitsrc_tree.c: refs, trees, blobs, diffs, signatures): the handle, and the
 * helpers both files use. The only headers besides them that see libgit2.
 */
#ifndef CS_RECONCILER_SOURCE_GITSRC_INT_H
#define CS_RECONCILER_SOURCE_GITSRC_INT_H

#include <git2.h>
#include <stddef.h>

#include "gitsrc.h"

struct gitsrc_size {
	git_oid oid; /* all zero: an empty slot (no blob has the null id) */
	size_t size;
};

/* Blob sizes by id, kept from one listing to the next (blobs never change): open addressing. */
struct gitsrc_sizes {
	struct gitsrc_size *v;
	size_t cap; /* 0 or a power of two */
	size_t n;
};

struct gitsrc {
	git_repository *repo;
	struct gitsrc_sizes sizes; /* of the blobs in the last listing */
	char *display;		   /* URL without credentials, or the local path */
	char *url;		   /* the URL as configured (may hold credentials); NULL for a local repository */
	char *host;		   /* host[:port] of url: the token is offered to no other host */
	char *url_secret;	   /* password (or token-as-user-name) found in url, masked in messages */
	char *token;		   /* https token; never logged, wiped on free */
	int remote;
	int http; /* url is http:// or https:// (the only schemes a token is sent over) */
	int auth_attempts;
	int auth_refused;
	/* SSH remotes */
	int ssh;
	char *ssh_user;	   /* from the URL, else "git" */
	char *ssh_host;	   /* lower-cased, no brackets */
	unsigned ssh_port; /* 22 unless the URL says otherwise */
	char *ssh_key;	   /* deploy key text: never logged, wiped on free */
	char *ssh_pass;	   /* its passphrase (may be NULL): wiped on free */
	char *known_hosts;
};

/* libgit2's last error message: the URL shown without credentials, the token, URL password and SSH key masked. */
const char *gitsrc_errmsg(const struct gitsrc *g);

/* A commit argument: a full id is taken as is, anything else is resolved like gitsrc_resolve. */
int gitsrc_commit_id(struct gitsrc *g, const char *s, git_oid *out);

#endif
