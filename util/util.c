/* Allocation, strings, time and durations shared by every module. */
#include "util.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "err.h"

static void util_oom(size_t n)
{
	fprintf(stderr, "error: out of memory (%zu bytes)\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p)
		util_oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		util_oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (!q)
		util_oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return s ? xstrndup(s, strlen(s)) : NULL;
}

char *xstrndup(const char *s, size_t n)
{
	char *p;

	n = strnlen(s, n); /* as strndup: never past the terminator (a short plan id was read past its end) */
	p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *xvasprintf(const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	char *p;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		util_oom(0);
	p = xmalloc((size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = xvasprintf(fmt, ap);
	va_end(ap);
	return p;
}

void util_grow(void *vp, size_t *cap, size_t need, size_t size)
{
	void **v = vp;
	size_t c = *cap;

	if (need <= c)
		return;
	if (c < 8)
		c = 8;
	while (c < need)
		c *= 2;
	*v = xrealloc(*v, c * size);
	*cap = c;
}

int util_streq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

int util_has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

int64_t util_now(void)
{
	return (int64_t)time(NULL);
}

int64_t util_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void util_fmt_time(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int util_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int util_parse_time(const char *s, int64_t *out)
{
	struct tm tm = {0};
	const char *p = s;
	int y, mo, d, h, mi, sec, off = 0;
	time_t t;

	if (!s || util_digits(&p, 4, &y) || *p++ != '-' || util_digits(&p, 2, &mo) || *p++ != '-' ||
	    util_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
		goto bad;
	p++;
	if (util_digits(&p, 2, &h) || *p++ != ':' || util_digits(&p, 2, &mi) || *p++ != ':' || util_digits(&p, 2, &sec))
		goto bad;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			goto bad;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;

		p++;
		if (util_digits(&p, 2, &oh) || *p++ != ':' || util_digits(&p, 2, &om))
			goto bad;
		off = sign * (oh * 3600 + om * 60);
	} else {
		goto bad;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		goto bad;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	*out = (int64_t)t - off;
	return 0;
bad:
	return cs_error(CS_EINVALID, "\"%s\" is not an RFC 3339 time", s ? s : "");
}

int util_parse_duration(const char *s, int64_t *out)
{
	const char *p = s;
	int64_t total = 0;
	int any = 0;

	if (!s || !*s)
		return cs_error(CS_EINVALID, "empty duration");
	while (*p) {
		int64_t v = 0, mul;
		int digits = 0;

		while (isdigit((unsigned char)*p)) {
			if (v > INT64_MAX / 10 - 10)
				return cs_error(CS_EINVALID, "duration \"%s\" is too large", s);
			v = v * 10 + (*p++ - '0');
			digits++;
		}
		if (!digits)
			goto bad;
		switch (*p) {
		case 'd': mul = 86400; break;
		case 'h': mul = 3600; break;
		case 'm':
			if (p[1] == 's')
				goto bad; /* milliseconds: never meaningful here */
			mul = 60;
			break;
		case 's': mul = 1; break;
		default: goto bad;
		}
		p++;
		if (v > (INT64_C(1) << 40) / mul)
			return cs_error(CS_EINVALID, "duration \"%s\" is too large", s);
		total += v * mul;
		any = 1;
	}
	if (!any)
		goto bad;
	if (total <= 0)
		return cs_error(CS_EINVALID, "duration \"%s\" must be greater than zero", s);
	*out = total;
	return 0;
bad:
	return cs_error(CS_EINVALID, "\"%s\" is not a duration (use units d, h, m, s: \"720h\", \"30d\", \"1h30m\")",
			s);
}

void util_fmt_duration(int64_t s, char out[32])
{
	char *p = out;
	size_t left = 32;
	int n;

	if (s <= 0) {
		snprintf(out, 32, "0s");
		return;
	}
	if (s % 86400 == 0) {
		snprintf(out, 32, "%lldd", (long long)(s / 86400));
		return;
	}
	if (s >= 3600) {
		n = snprintf(p, left, "%lldh", (long long)(s / 3600));
		p += n;
		left -= (size_t)n;
		s %= 3600;
	}
	if (s >= 60) {
		n = snprintf(p, left, "%lldm", (long long)(s / 60));
		p += n;
		left -= (size_t)n;
		s %= 60;
	}
	if (s > 0)
		snprintf(p, left, "%llds", (long long)s);
}

size_t util_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[65], prev;

	if (la > 64 || lb > 64)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cur = row[j];
			size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
			size_t best = prev + cost;

			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			prev = cur;
		}
	}
	return row[lb];
}

uint64_t util_hash_mem(const void *p, size_t len)
{
	const unsigned char *c = p;
	uint64_t h = UINT64_C(1469598103934665603);

	for (size_t i = 0; i < len; i++) {
		h ^= c[i];
		h *= UINT64_C(1099511628211);
	}
	return h;
}

uint64_t util_hash_str(const char *s)
{
	return util_hash_mem(s, strlen(s));
}

int util_ptr_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;

	return x < y ? -1 : x > y;
}

uint64_t util_hash_mix(uint64_t h)
{
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64_C(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

size_t util_bsearch_name(const void *base, size_t n, size_t size, const char *key, int *found)
{
	size_t lo = 0, hi = n;

	*found = 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *name;
		int c;

		memcpy(&name, (const char *)base + mid * size, sizeof(name));
		c = strcmp(name, key);
		if (!c) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
