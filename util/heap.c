/* Heap tuning for short-lived commands (heap.h). */
#include "heap.h"

#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void heap_tune(size_t pad)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t from, to;
	void *p;

	if (page <= 0)
		return;
	/* One heap for every thread: per-thread arenas would fault their own pages one by one. */
	mallopt(M_ARENA_MAX, 1);
	mallopt(M_TOP_PAD, (int)pad);
	mallopt(M_TRIM_THRESHOLD, (int)pad);
	/* Large blocks from the heap too (mmap'd blocks are faulted page by page and never reused). */
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	/*
	 * A block larger than the heap's free top makes malloc extend the heap
	 * by it plus pad (virtual: nothing is touched). That range is marked
	 * for huge pages and given back: the next allocations come from it.
	 * Growth beyond it is a new mapping, on ordinary pages.
	 */
	if (!(p = malloc(1024 * 1024)))
		return;
	from = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
	to = (uintptr_t)sbrk(0);
	if (to > from)
		madvise((void *)from, to - from, MADV_HUGEPAGE);
	free(p);
}
