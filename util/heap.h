/*
 * The heap of a short-lived command that builds large structures at once
 * (a 10,000-certificate plan touches ~60 MB). On a virtual machine a page
 * fault can cost 10-20 us (measured 12-18 us here, ~0.2 us on bare metal):
 * 15,000 faults are then most of a plan's time. heap_tune makes the heap
 * grow in large steps, on transparent huge pages where the kernel allows
 * them (THP "madvise" mode), and keeps threads on that one heap.
 */
#ifndef CS_UTIL_HEAP_H
#define CS_UTIL_HEAP_H

#include <stddef.h>

/*
 * Call once at the start of main, before any thread. pad: the heap
 * reserved at once on huge pages (virtual: untouched, it costs no memory;
 * growth beyond it is on ordinary pages). A kernel without THP or a
 * refused madvise leaves ordinary pages: never an error.
 */
void heap_tune(size_t pad);

#endif
