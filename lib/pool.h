/* A pool of fixed-size records carved from page-sized blocks: for the many small, long-lived
 * records kept per device (the check-in cache, last-seen times), so that each costs its own
 * size, not a malloc header and rounding, and they do not pin pages between short-lived
 * allocations. Not thread-safe: the caller's lock guards a pool. Never prints or exits. */
#ifndef GN_POOL_H
#define GN_POOL_H

#include <stddef.h>

typedef struct gn_pool {
	size_t size;      /* of one record, rounded up to a multiple of 8 */
	size_t per_block; /* records in one block */
	size_t left;      /* records not yet handed out in the newest block */
	void *blocks;     /* the newest block; each begins with a pointer to the one before */
	void *free;       /* records given back, each holding a pointer to the next */
	size_t in_use;    /* records handed out and not given back */
	size_t nblocks;
} gn_pool;

/* Sets up an empty pool of records of size bytes (8 to 1024). */
void gn_pool_init(gn_pool *p, size_t size);
/* Returns a zeroed record (borrowed from the pool: give it back with gn_pool_put); aborts on
 * out-of-memory, like gn_malloc. */
void *gn_pool_get(gn_pool *p);
/* Gives a record back (NULL is fine); its memory serves the next gn_pool_get. */
void gn_pool_put(gn_pool *p, void *rec);
/* Frees every block: every record of the pool is gone. The pool is empty and usable again. */
void gn_pool_cleanup(gn_pool *p);
/* Bytes the pool holds from the allocator (its blocks), for memory accounting. */
size_t gn_pool_bytes(const gn_pool *p);

#endif
