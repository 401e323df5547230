/* Starts and stops tests/peers/bind.sh for the DNS unit tests. */
#include "bindpeer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../util/util.h"
#include "testutil.h"

/* Binds a socket of type to 127.0.0.1:port (0: any); the port bound, or -1. */
static int bindpeer_try(int type, int port, int *fd)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	socklen_t sl = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((*fd = socket(AF_INET, type, 0)) < 0)
		return -1;
	if (bind(*fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(*fd, (struct sockaddr *)&sa, &sl)) {
		close(*fd);
		*fd = -1;
		return -1;
	}
	return ntohs(sa.sin_port);
}

int bindpeer_free_port(void)
{
	for (int i = 0; i < 50; i++) {
		int u, t, port = bindpeer_try(SOCK_DGRAM, 0, &u), ok;
		if (port < 0)
			return -1;
		ok = bindpeer_try(SOCK_STREAM, port, &t) == port;
		if (t >= 0)
			close(t);
		close(u);
		if (ok)
			return port;
	}
	return -1;
}

int bindpeer_start(struct bindpeer *b, const char *dir, const char *const *zones, const char *const *extras, size_t n)
{
	return bindpeer_start_alg(b, dir, NULL, zones, extras, n);
}

int bindpeer_start_alg(struct bindpeer *b, const char *dir, const char *alg, const char *const *zones,
		       const char *const *extras, size_t n)
{
	char *cmd = NULL, *tmp;
	FILE *p;
	size_t len;
	int rc = -1;

	memset(b, 0, sizeof(*b));
	if ((b->port = bindpeer_free_port()) < 0)
		return -1;
	b->dir = xasprintf("%s/named-%s", dir, alg ? alg : "hmac-sha256");
	snprintf(b->server, sizeof(b->server), "127.0.0.1:%d", b->port);
	cmd = xasprintf("sh %s/tests/peers/bind.sh start %s %d", test_srcdir(), b->dir, b->port);
	if (mkdir(b->dir, 0755))
		goto out;
	if (alg) { /* bind.sh keeps a key it finds */
		tmp = xasprintf("cd %s && tsig-keygen -a %s certsync-key. > tsig.key", b->dir, alg);
		if (system(tmp) != 0) {
			free(tmp);
			goto out;
		}
		free(tmp);
	}
	for (size_t i = 0; i < n; i++) {
		if (extras && extras[i]) {
			tmp = xasprintf("extra.%s", zones[i]);
			free(test_write(b->dir, tmp, extras[i], 0644));
			free(tmp);
		}
		tmp = xasprintf("%s %s", cmd, zones[i]);
		free(cmd);
		cmd = tmp;
	}
	if (!(p = popen(cmd, "r")))
		goto out;
	if (!fgets(b->secret, sizeof(b->secret), p))
		b->secret[0] = 0;
	if (pclose(p) == 0 && (len = strlen(b->secret)) > 1) {
		b->secret[len - 1] = 0; /* the newline */
		rc = 0;
	}
out:
	free(cmd);
	return rc;
}

void bindpeer_stop(struct bindpeer *b)
{
	char *cmd;

	if (!b->dir)
		return;
	cmd = xasprintf("sh %s/tests/peers/bind.sh stop %s", test_srcdir(), b->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bind.sh stop %s failed\n", b->dir);
	free(cmd);
	free(b->dir);
	b->dir = NULL;
}
