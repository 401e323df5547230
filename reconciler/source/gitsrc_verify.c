/* Commit signatures: OpenPGP through gpg with a throw-away keyring, SSH through `ssh-keygen -Y`. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gitsrc.h"

#include "../../util/buf.h"
#include "../../util/err.h"
#include "../../util/fsutil.h"
#include "../../util/util.h"

extern char **environ;

#define VERIFY_TIMEOUT_MS 60000
#define VERIFY_MAX_OUTPUT (256 * 1024)

/* A scratch directory for one verification: keys, signature, signed data, a keyring. */
struct verify_dir {
	char *path;
};

static int verify_dir_make(struct verify_dir *v)
{
	const char *tmp = getenv("TMPDIR");
	char *t = xasprintf("%s/certsync-verify-XXXXXX", tmp && *tmp ? tmp : "/tmp");

	if (!mkdtemp(t)) {
		int rc = cs_error(CS_ERROR, "verify: mkdtemp %s: %s", t, strerror(errno));

		free(t);
		return rc;
	}
	v->path = t;
	return 0;
}

static char *verify_path(const struct verify_dir *v, const char *name)
{
	return fsutil_join(v->path, name);
}

static int verify_write(const struct verify_dir *v, const char *name, const char *data, size_t len)
{
	char *p = verify_path(v, name);
	int rc = fsutil_write_new(p, data, len, 0600);

	free(p);
	return rc;
}

/*
 * Runs argv (looked up on PATH) with stdin from in_name (or /dev/null) and
 * stdout+stderr into out_name, all inside v; waits at most VERIFY_TIMEOUT_MS.
 * *status is the exit code (or 128+signal). CS_ERROR if it cannot run.
 */
static int verify_run(const struct verify_dir *v, char *const argv[], const char *in_name, const char *out_name,
		      int *status)
{
	posix_spawn_file_actions_t fa;
	char *in = in_name ? verify_path(v, in_name) : xstrdup("/dev/null"), *out = verify_path(v, out_name);
	char *env[] = {NULL, NULL, "LC_ALL=C", NULL};
	const char *path = getenv("PATH");
	pid_t pid;
	int err, st = 0, waited = 0, rc = 0;

	env[0] = xasprintf("PATH=%s", path && *path ? path : "/usr/bin:/bin");
	env[1] = xasprintf("HOME=%s", v->path); /* never the user's ~/.gnupg or ~/.ssh */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, in, O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	if (err) {
		rc = cs_error(CS_ERROR, "verify: cannot run %s: %s (is it installed?)", argv[0], strerror(err));
		goto out;
	}
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			rc = cs_error(CS_ERROR, "verify: waiting for %s: %s", argv[0], strerror(errno));
			goto out;
		}
		if (waited >= VERIFY_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			rc = cs_error(CS_ERROR, "verify: %s took over %d s; killed", argv[0], VERIFY_TIMEOUT_MS / 1000);
			goto out;
		}
		nanosleep(&(struct timespec){0, 5 * 1000000L}, NULL);
		waited += 5;
	}
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
out:
	free(env[0]);
	free(env[1]);
	free(in);
	free(out);
	return rc;
}

static void verify_read(const struct verify_dir *v, const char *name, struct buf *out)
{
	char *p = verify_path(v, name);

	buf_init(out, 0);
	if (fsutil_read_file(p, VERIFY_MAX_OUTPUT, out))
		cs_error_clear();
	if (!out->data)
		buf_puts(out, "");
	free(p);
}

/* The value after "[GNUPG:] KEYWORD " in gpg's status output, up to the end of its line (caller frees), or NULL. */
static char *verify_status(const char *status, const char *keyword)
{
	size_t kl = strlen(keyword);

	for (const char *p = status; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, "[GNUPG:] ", 9) || strncmp(p + 9, keyword, kl) ||
		    (p[9 + kl] != ' ' && p[9 + kl] != '\n'))
			continue;
		p += 9 + kl;
		p += *p == ' ';
		return xstrndup(p, strcspn(p, "\n"));
	}
	return NULL;
}

/* The first word of a status value (a key id or fingerprint). Caller frees. */
static char *verify_word(const char *s)
{
	return xstrndup(s, strcspn(s, " "));
}

/* Maps gpg's status lines to a verdict: 0 with *signer, or CS_EAUTH with the reason. */
static int verify_gpg_verdict(const char *commit, const char *status, char **signer)
{
	static const struct {
		const char *keyword, *why;
	} bad[] = {
		{"BADSIG", "a bad signature by OpenPGP key %s: the commit was altered or the signature forged"},
		{"EXPKEYSIG", "signed by OpenPGP key %s, which has expired"},
		{"REVKEYSIG", "signed by OpenPGP key %s, which is revoked"},
		{"EXPSIG", "an expired signature by OpenPGP key %s"},
		{"NO_PUBKEY", "signed by OpenPGP key %s, which is not in source.verify.keys"},
		{"ERRSIG", "signed by OpenPGP key %s, which cannot be checked (not in source.verify.keys, or an "
			   "unsupported algorithm)"},
	};
	char *good = verify_status(status, "GOODSIG"), *valid = verify_status(status, "VALIDSIG"), *v, *id, *why;
	int rc;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (!(v = verify_status(status, bad[i].keyword)))
			continue;
		id = verify_word(v);
		why = xasprintf(bad[i].why, id);
		rc = cs_error(CS_EAUTH, "commit %.12s is not verified: %s", commit, why);
		free(why);
		free(id);
		free(v);
		goto out;
	}
	if (!good || !valid) {
		rc = cs_error(CS_EAUTH, "commit %.12s is not verified: gpg did not report a good signature", commit);
		goto out;
	}
	id = verify_word(valid);
	v = strchr(good, ' ');
	*signer = xasprintf("OpenPGP key %s%s%s%s", id, v ? " (" : "", v ? v + 1 : "", v ? ")" : "");
	free(id);
	rc = 0;
out:
	free(good);
	free(valid);
	return rc;
}

static int verify_gpg(const struct verify_dir *v, const char *commit, char **signer)
{
	char *home = verify_path(v, "gnupg"), *keys = verify_path(v, "keys"), *status = verify_path(v, "status"),
	     *sig = verify_path(v, "sig"), *data = verify_path(v, "data");
	char *import[] = {"gpg", "--batch", "--no-tty", "--no-autostart", "--homedir", home, "--import", keys, NULL};
	char *check[] = {
		"gpg", "--batch", "--no-tty", "--no-autostart", "--homedir", home, "--status-file", status, "--verify",
		sig,   data,	  NULL};
	struct buf st = BUF_INIT, log = BUF_INIT;
	int rc, code = 0;

	if (mkdir(home, 0700)) {
		rc = cs_error(CS_ERROR, "verify: mkdir %s: %s", home, strerror(errno));
		goto out;
	}
	if ((rc = verify_run(v, import, NULL, "import.log", &code)))
		goto out;
	if (code) {
		verify_read(v, "import.log", &log);
		rc = cs_error(CS_EINVALID, "source.verify.keys: gpg could not import the OpenPGP keys: %.300s",
			      log.data);
		goto out;
	}
	if ((rc = verify_run(v, check, NULL, "verify.log", &code)))
		goto out;
	verify_read(v, "status", &st);
	rc = verify_gpg_verdict(commit, st.data, signer);
	if (!rc && code) /* a good signature line but a failing gpg: never trusted */
		rc = cs_error(CS_EAUTH, "commit %.12s is not verified: gpg exited with %d", commit, code);
out:
	buf_free(&st);
	buf_free(&log);
	free(home);
	free(keys);
	free(status);
	free(sig);
	free(data);
	return rc;
}

/* One SSH public key of a line ("[options] type base64 [comment]", or an allowed_signers line): "type base64". */
static char *verify_ssh_key_of(const char *line, size_t len)
{
	static const char *const types[] = {"ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"};

	for (size_t i = 0; i < len;) {
		size_t tl;

		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		tl = i;
		while (tl < len && line[tl] != ' ' && line[tl] != '\t')
			tl++;
		for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
			size_t kl = strlen(types[k]), end = tl;

			if (tl - i <= kl || strncmp(line + i, types[k], kl))
				continue;
			while (end < len && (line[end] == ' ' || line[end] == '\t'))
				end++;
			while (end < len && line[end] != ' ' && line[end] != '\t')
				end++;
			return xstrndup(line + i, end - i);
		}
		i = tl;
	}
	return NULL;
}

/* allowed_signers text: every SSH key of keys, for any principal, namespace "git". 0 keys: "". */
static void verify_allowed_signers(const char *keys, struct buf *out, size_t *n)
{
	int in_pgp = 0;

	*n = 0;
	buf_init(out, 0);
	buf_puts(out, "");
	for (const char *p = keys; *p;) {
		size_t len = strcspn(p, "\n");
		char *k;

		if (!strncmp(p, "-----BEGIN PGP", 14))
			in_pgp = 1;
		else if (!strncmp(p, "-----END PGP", 12))
			in_pgp = 0;
		else if (!in_pgp && *p != '#' && (k = verify_ssh_key_of(p, len))) {
			buf_printf(out, "* namespaces=\"git\" %s\n", k);
			(*n)++;
			free(k);
		}
		p += len + (p[len] == '\n');
	}
}

/* The "SHA256:…" in ssh-keygen's answer, or NULL. Caller frees. */
static char *verify_ssh_fp(const char *out)
{
	const char *p = out ? strstr(out, "SHA256:") : NULL;

	return p ? xstrndup(p, strcspn(p, " \n")) : NULL;
}

static int verify_ssh(const struct verify_dir *v, const char *commit, const char *keys, char **signer)
{
	char *allowed = verify_path(v, "allowed_signers"), *sig = verify_path(v, "sig");
	char *check[] = {"ssh-keygen", "-Y", "verify", "-f", allowed, "-I", "certsync", "-n", "git", "-s", sig, NULL};
	char *novalidate[] = {"ssh-keygen", "-Y", "check-novalidate", "-n", "git", "-s", sig, NULL};
	struct buf a = BUF_INIT, out = BUF_INIT;
	char *fp = NULL;
	size_t n = 0;
	int rc, code = 0;

	verify_allowed_signers(keys, &a, &n);
	if (!n) {
		rc = cs_error(CS_EAUTH,
			      "commit %.12s is not verified: it has an SSH signature and source.verify.keys "
			      "has no SSH public key",
			      commit);
		goto out;
	}
	if ((rc = verify_write(v, "allowed_signers", a.data, a.len)) ||
	    (rc = verify_run(v, check, "data", "verify.log", &code)))
		goto out;
	verify_read(v, "verify.log", &out);
	if (!code && strstr(out.data, "Good \"git\" signature") && (fp = verify_ssh_fp(out.data))) {
		*signer = xasprintf("SSH key %s", fp);
		goto out;
	}
	/* Why not: a sound signature by a key we do not trust, or no sound signature at all. */
	buf_free(&out);
	if ((rc = verify_run(v, novalidate, "data", "check.log", &code)))
		goto out;
	verify_read(v, "check.log", &out);
	free(fp);
	fp = verify_ssh_fp(out.data);
	if (!code && fp)
		rc = cs_error(CS_EAUTH,
			      "commit %.12s is not verified: signed by SSH key %s, which is not in "
			      "source.verify.keys",
			      commit, fp);
	else
		rc = cs_error(CS_EAUTH,
			      "commit %.12s is not verified: a bad SSH signature%s%s: the commit was altered or the "
			      "signature forged",
			      commit, fp ? " by key " : "", fp ? fp : "");
out:
	buf_free(&a);
	buf_free(&out);
	free(fp);
	free(allowed);
	free(sig);
	return rc;
}

int gitsrc_verify_signature(const char *commit, const char *sig, size_t sig_len, const char *data, size_t data_len,
			    const char *keys, char **signer)
{
	struct verify_dir v = {NULL};
	int ssh = sig_len >= 29 && !strncmp(sig, "-----BEGIN SSH SIGNATURE-----", 29);
	int pgp = sig_len >= 29 && !strncmp(sig, "-----BEGIN PGP SIGNATURE-----", 29);
	int rc;

	if (!ssh && !pgp)
		return cs_error(CS_EAUTH,
				"commit %.12s is not verified: its signature is neither OpenPGP nor SSH (X.509 "
				"signatures are not supported)",
				commit);
	if ((rc = verify_dir_make(&v)) || (rc = verify_write(&v, "sig", sig, sig_len)) ||
	    (rc = verify_write(&v, "data", data, data_len)) || (rc = verify_write(&v, "keys", keys, strlen(keys))))
		goto out;
	rc = ssh ? verify_ssh(&v, commit, keys, signer) : verify_gpg(&v, commit, signer);
out:
	if (v.path)
		fsutil_rm_rf(v.path);
	free(v.path);
	return rc;
}
