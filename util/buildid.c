/* The running program's GNU build id, read from its own ELF notes. */
#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

struct bid_find {
	char hex[2 * 64 + 1];
	int found;
};

/* Align a note field to 4 bytes (ELF notes are 4-aligned on both classes in practice). */
#define BID_ALIGN(n) (((n) + 3u) & ~3u)

static void bid_scan(const unsigned char *p, size_t len, struct bid_find *f)
{
	while (!f->found && len >= sizeof(ElfW(Nhdr))) {
		const ElfW(Nhdr) *nh = (const void *)p;
		size_t name = BID_ALIGN(nh->n_namesz), desc = BID_ALIGN(nh->n_descsz);
		size_t total = sizeof(*nh) + name + desc;

		if (total > len)
			return;
		if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(p + sizeof(*nh), "GNU", 4) &&
		    nh->n_descsz > 0 && nh->n_descsz <= 64) {
			const unsigned char *d = p + sizeof(*nh) + name;

			for (size_t i = 0; i < nh->n_descsz; i++)
				snprintf(f->hex + 2 * i, 3, "%02x", d[i]);
			f->found = 1;
		}
		p += total;
		len -= total;
	}
}

static int bid_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct bid_find *f = arg;

	(void)size;
	for (int i = 0; i < info->dlpi_phnum && !f->found; i++)
		if (info->dlpi_phdr[i].p_type == PT_NOTE)
			bid_scan((const unsigned char *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr),
				 info->dlpi_phdr[i].p_memsz, f);
	return 1; /* the first object is the program itself */
}

static struct bid_find bid;
static pthread_once_t bid_once = PTHREAD_ONCE_INIT;

static void bid_init(void)
{
	dl_iterate_phdr(bid_cb, &bid);
}

const char *util_build_id(void)
{
	pthread_once(&bid_once, bid_init);
	return bid.found ? bid.hex : NULL;
}
