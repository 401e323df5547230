/*
 * What an ACME server answers: the same bytes as a problem document (with
 * its one-line text and class), a directory, an account, an order, an
 * authorization, a challenge, an orders page, a renewalInfo answer, and a
 * Link header. Whatever the input, every result stays within its bounds:
 * the text fits and ends on a whole UTF-8 character, lists hold at most
 * their limits, tokens are base64url, URLs are http(s).
 */
#include <string.h>

#include "../reconciler/providers/acme.h"
#include "../reconciler/providers/acme_wire.h"
#include "../util/err.h"
#include "../util/util.h"
#include "fuzz.h"

static const struct acme_wire W = {"le", "acme fuzz", "https://ca.test/x"};

static void check_url(const char *u)
{
	FUZZ_CHECK(!u || !strncmp(u, "https://", 8) || !strncmp(u, "http://", 7));
	FUZZ_CHECK(!u || strlen(u) <= ACME_MAX_URL);
}

static void fuzz_problem(const char *data, size_t size)
{
	struct acme_problem p;
	const char *cls = NULL;
	char text[96];
	size_t len;

	if (acme_problem_parse(data, size, 400, &p))
		return;
	FUZZ_CHECK(p.type && p.n_sub <= ACME_MAX_SUBPROBLEMS);
	acme_problem_text(&p, text, sizeof(text));
	len = strlen(text);
	FUZZ_CHECK(len < sizeof(text));
	FUZZ_CHECK(!memchr(text, '\n', len));
	/* whole UTF-8 characters only (jansson hands over valid UTF-8; cuts must keep it so) */
	for (size_t i = 0; i < len;) {
		unsigned char ch = (unsigned char)text[i];
		size_t l = ch < 0x80 ? 1 : (ch & 0xE0) == 0xC0 ? 2 : (ch & 0xF0) == 0xE0 ? 3 : 4;

		FUZZ_CHECK(i + l <= len);
		i += l;
	}
	FUZZ_CHECK(acme_problem_class(&p, &cls) < 0 && cls);
	FUZZ_CHECK(acme_challenge_problem_class(&p, &cls) < 0 && cls);
	acme_problem_free(&p);
}

static void fuzz_objects(const char *data, size_t size)
{
	struct acme_directory d;
	struct acme_order o;
	struct acme_authz a;
	struct acme_challenge c;
	struct acme_renewal_info ri;
	char *orders = NULL, **urls = NULL;
	size_t n = 0;

	if (!acme_directory_parse(&W, data, size, &d)) {
		check_url(d.new_nonce);
		FUZZ_CHECK(d.n_profiles <= ACME_MAX_META && d.n_caa_identities <= ACME_MAX_META);
		acme_directory_free(&d);
	}
	if (!acme_account_parse(&W, data, size, &orders))
		check_url(orders);
	free(orders);
	if (!acme_order_parse(&W, data, size, &o)) {
		FUZZ_CHECK(o.status && o.finalize && o.n_authorizations <= ACME_MAX_AUTHZ);
		for (size_t i = 0; i < o.n_authorizations; i++)
			check_url(o.authorizations[i]);
		acme_order_free(&o);
	}
	if (!acme_authz_parse(&W, data, size, &a)) {
		FUZZ_CHECK(a.identifier && a.n_challenges <= ACME_MAX_CHALLENGES);
		for (size_t i = 0; i < a.n_challenges; i++)
			FUZZ_CHECK(!a.challenges[i].token || !strchr(a.challenges[i].token, '/'));
		acme_authz_free(&a);
	}
	if (!acme_challenge_parse(&W, data, size, &c))
		acme_challenge_free(&c);
	if (!acme_orders_page_parse(&W, data, size, &urls, &n))
		FUZZ_CHECK(n <= ACME_MAX_ORDER_URLS);
	for (size_t i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
	if (!acme_renewal_info_parse(&W, data, size, &ri)) {
		FUZZ_CHECK(ri.start < ri.end);
		acme_renewal_info_free(&ri);
	}
}

static void fuzz_links(const char *data, size_t size)
{
	struct http_header h = {"link", NULL};
	struct http_response res;
	char *out[4];
	size_t n;

	memset(&res, 0, sizeof(res));
	h.value = xstrndup(data, size);
	res.headers = &h;
	res.n_headers = 1;
	n = acme_links(&res, "https://ca.test/cert/1", "alternate", out, 4);
	FUZZ_CHECK(n <= 4);
	for (size_t i = 0; i < n; i++) {
		check_url(out[i]);
		free(out[i]);
	}
	free(h.value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_problem((const char *)data, size);
	fuzz_objects((const char *)data, size);
	fuzz_links((const char *)data, size);
	cs_error_clear();
	return 0;
}
