/*
 * A cert_spec as bytes and back, for the on-disk parse cache
 * (reconciler/spec_cache.c). The unpacked spec is one allocation: the
 * struct, its arrays and its strings, so loading 10,000 specs is 10,000
 * malloc calls rather than 150,000, and nothing is trusted: every count and
 * length is checked against what is left of the record.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../util/buf.h"
#include "../util/util.h"
#include "manifest.h"

/* Counts first, so the unpacker sizes the block before it reads a string. */
enum { PK_LABELS, PK_DNS, PK_IPS, PK_URIS, PK_EMAILS, PK_SUBJECT, PK__COUNTS };

#define PK_MAX_ITEMS 4096
#define PK_NUMS 21 /* the integer fields cert_spec_pack writes */
/* The bytes of a record that are not string bytes: counts, integers, X.509 positions, the hash. */
#define PK_FIXED                                                                                                       \
	(PK__COUNTS * 4 + PK_NUMS * 8 + XF__MAX * 16 +                                                                 \
	 65) /* above any manifest limit: a larger count is a damaged record */

static void pk_u32(struct buf *b, uint32_t v)
{
	buf_append(b, &v, sizeof(v));
}

static void pk_i64(struct buf *b, int64_t v)
{
	buf_append(b, &v, sizeof(v));
}

/* A string as u32 length (UINT32_MAX for NULL), then its bytes and a NUL. */
static void pk_str(struct buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	pk_u32(b, s ? (uint32_t)n : UINT32_MAX);
	if (s)
		buf_append(b, s, n + 1);
}

static void pk_strs(struct buf *b, char *const *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		pk_str(b, v[i]);
}

void cert_spec_pack(const struct cert_spec *s, struct buf *b)
{
	const int64_t nums[] = {
		s->line,	   s->col,	   s->issuer_line, s->issuer_col,   s->common_name_set, s->auto_renew,
		s->auto_renew_set, s->suspend,	   s->duration,	   s->renew_before, s->key_alg,		s->key_size,
		s->rotation,	   s->output_line, s->output_col,  s->formats,	    s->formats_line,	s->formats_col,
		s->usages,	   s->is_ca,	   s->path_len};

	pk_u32(b, (uint32_t)s->n_labels);
	pk_u32(b, (uint32_t)s->n_dns);
	pk_u32(b, (uint32_t)s->n_ips);
	pk_u32(b, (uint32_t)s->n_uris);
	pk_u32(b, (uint32_t)s->n_emails);
	pk_u32(b, (uint32_t)s->n_subject);
	_Static_assert(sizeof(nums) / sizeof(nums[0]) == PK_NUMS, "PK_NUMS counts the integers packed");
	for (size_t i = 0; i < PK_NUMS; i++)
		pk_i64(b, nums[i]);
	for (int f = 0; f < XF__MAX; f++) {
		pk_i64(b, s->xpos[f][0]);
		pk_i64(b, s->xpos[f][1]);
	}
	buf_append(b, s->hash, sizeof(s->hash));
	pk_str(b, s->name);
	pk_str(b, s->file);
	pk_str(b, s->issuer);
	pk_str(b, s->common_name);
	pk_str(b, s->domain);
	pk_str(b, s->validation);
	pk_str(b, s->output_dir);
	for (size_t i = 0; i < s->n_labels; i++) {
		pk_str(b, s->labels[i].key);
		pk_str(b, s->labels[i].value);
	}
	pk_strs(b, s->dns_names, s->n_dns);
	pk_strs(b, s->ips, s->n_ips);
	pk_strs(b, s->uris, s->n_uris);
	pk_strs(b, s->emails, s->n_emails);
	for (size_t i = 0; i < s->n_subject; i++) {
		pk_u32(b, (uint32_t)s->subject[i].attr);
		pk_str(b, s->subject[i].value);
	}
}

/* ---------- unpacking ---------- */

struct upk {
	const unsigned char *p, *end;
	char *strings; /* the block's string area, filled in order */
	int bad;
};

static uint32_t upk_u32(struct upk *u)
{
	uint32_t v = 0;

	if (u->bad || (size_t)(u->end - u->p) < sizeof(v)) {
		u->bad = 1;
		return 0;
	}
	memcpy(&v, u->p, sizeof(v));
	u->p += sizeof(v);
	return v;
}

static int64_t upk_i64(struct upk *u, int64_t min, int64_t max)
{
	int64_t v = 0;

	if (u->bad || (size_t)(u->end - u->p) < sizeof(v)) {
		u->bad = 1;
		return 0;
	}
	memcpy(&v, u->p, sizeof(v));
	u->p += sizeof(v);
	if (v < min || v > max)
		u->bad = 1;
	return v;
}

/* A string copied into the block; NULL for a NULL string or a damaged record (u->bad). */
static char *upk_str(struct upk *u, int nullable)
{
	uint32_t n = upk_u32(u);
	char *s;

	if (u->bad)
		return NULL;
	if (n == UINT32_MAX) {
		u->bad = !nullable;
		return NULL;
	}
	if ((size_t)(u->end - u->p) < (size_t)n + 1 || u->p[n] != '\0' || memchr(u->p, '\0', n)) {
		u->bad = 1;
		return NULL;
	}
	s = u->strings;
	memcpy(s, u->p, (size_t)n + 1);
	u->strings += n + 1;
	u->p += n + 1;
	return s;
}

static void upk_strs(struct upk *u, char **v, size_t n)
{
	for (size_t i = 0; i < n && !u->bad; i++)
		v[i] = upk_str(u, 0);
}

/* Carves n items of size from the block's array area. */
static void *upk_carve(unsigned char **area, size_t n, size_t size)
{
	void *p = n ? *area : NULL;

	*area += n * size;
	return p;
}

struct cert_spec *cert_spec_unpack(const void *data, size_t len)
{
	struct upk u = {data, (const unsigned char *)data + len, NULL, 0};
	uint32_t counts[PK__COUNTS];
	size_t arrays = 0, n_ptrs;
	struct cert_spec *s;
	unsigned char *area;

	for (int i = 0; i < PK__COUNTS; i++)
		if ((counts[i] = upk_u32(&u)) > PK_MAX_ITEMS)
			return NULL;
	if (u.bad)
		return NULL;
	n_ptrs = (size_t)counts[PK_DNS] + counts[PK_IPS] + counts[PK_URIS] + counts[PK_EMAILS];
	arrays = counts[PK_LABELS] * sizeof(struct label) + n_ptrs * sizeof(char *) +
		 counts[PK_SUBJECT] * sizeof(struct subject_entry);
	/* the strings are the record less its fixed part: that bounds the block's string area */
	if (len < PK_FIXED)
		return NULL;
	s = xcalloc(1, sizeof(*s) + arrays + len - PK_FIXED);
	area = (unsigned char *)(s + 1);
	u.strings = (char *)area + arrays;
	s->packed = 1;
	s->n_labels = counts[PK_LABELS];
	s->labels = upk_carve(&area, s->n_labels, sizeof(*s->labels));
	s->n_dns = counts[PK_DNS];
	s->dns_names = upk_carve(&area, s->n_dns, sizeof(char *));
	s->n_ips = counts[PK_IPS];
	s->ips = upk_carve(&area, s->n_ips, sizeof(char *));
	s->n_uris = counts[PK_URIS];
	s->uris = upk_carve(&area, s->n_uris, sizeof(char *));
	s->n_emails = counts[PK_EMAILS];
	s->emails = upk_carve(&area, s->n_emails, sizeof(char *));
	s->n_subject = counts[PK_SUBJECT];
	s->subject = upk_carve(&area, s->n_subject, sizeof(*s->subject));

	s->line = (int)upk_i64(&u, 0, INT32_MAX);
	s->col = (int)upk_i64(&u, 0, INT32_MAX);
	s->issuer_line = (int)upk_i64(&u, 0, INT32_MAX);
	s->issuer_col = (int)upk_i64(&u, 0, INT32_MAX);
	s->common_name_set = (int)upk_i64(&u, 0, 1);
	s->auto_renew = (int)upk_i64(&u, 0, 1);
	s->auto_renew_set = (int)upk_i64(&u, 0, 1);
	s->suspend = (int)upk_i64(&u, 0, 1);
	s->duration = upk_i64(&u, 0, INT64_MAX);
	s->renew_before = upk_i64(&u, 0, INT64_MAX);
	s->key_alg = (enum key_alg)upk_i64(&u, 0, INT32_MAX);
	s->key_size = (int)upk_i64(&u, 0, INT32_MAX);
	s->rotation = (enum key_rotation)upk_i64(&u, 0, INT32_MAX);
	s->output_line = (int)upk_i64(&u, 0, INT32_MAX);
	s->output_col = (int)upk_i64(&u, 0, INT32_MAX);
	s->formats = (unsigned)upk_i64(&u, 0, (1 << OUTFMT__MAX) - 1);
	s->formats_line = (int)upk_i64(&u, 0, INT32_MAX);
	s->formats_col = (int)upk_i64(&u, 0, INT32_MAX);
	s->usages = (unsigned)upk_i64(&u, 0, (1 << USAGE__MAX) - 1);
	s->is_ca = (int)upk_i64(&u, 0, 1);
	s->path_len = (int)upk_i64(&u, -1, INT32_MAX);
	for (int f = 0; f < XF__MAX; f++) {
		s->xpos[f][0] = (int)upk_i64(&u, 0, INT32_MAX);
		s->xpos[f][1] = (int)upk_i64(&u, 0, INT32_MAX);
	}
	if (!u.bad && (size_t)(u.end - u.p) >= sizeof(s->hash) && u.p[sizeof(s->hash) - 1] == '\0') {
		memcpy(s->hash, u.p, sizeof(s->hash));
		u.p += sizeof(s->hash);
	} else {
		u.bad = 1;
	}
	s->name = upk_str(&u, 0);
	s->file = upk_str(&u, 0);
	s->issuer = upk_str(&u, 1);
	s->common_name = upk_str(&u, 1);
	s->domain = upk_str(&u, 1);
	s->validation = upk_str(&u, 1);
	s->output_dir = upk_str(&u, 1);
	for (size_t i = 0; i < s->n_labels && !u.bad; i++) {
		s->labels[i].key = upk_str(&u, 0);
		s->labels[i].value = upk_str(&u, 0);
	}
	upk_strs(&u, s->dns_names, s->n_dns);
	upk_strs(&u, s->ips, s->n_ips);
	upk_strs(&u, s->uris, s->n_uris);
	upk_strs(&u, s->emails, s->n_emails);
	for (size_t i = 0; i < s->n_subject && !u.bad; i++) {
		uint32_t a = upk_u32(&u);

		if (a >= SUBJ__MAX)
			u.bad = 1;
		s->subject[i].attr = (enum subject_attr)a;
		s->subject[i].value = upk_str(&u, 0);
	}
	if (u.bad || u.p != u.end) {
		free(s);
		return NULL;
	}
	return s;
}
