/* Fixed-size record pools (see pool.h). */
#include "pool.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* A block and glibc's 16-byte chunk header fill one 4 KiB page. */
#define BLOCK_BYTES (4096 - 16)
#define HEADER sizeof(void *)

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
/* Records given back are poisoned, so that a use after gn_pool_put is reported as one after free(). */
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

void gn_pool_init(gn_pool *p, size_t size)
{
	assert(size >= 8 && size <= 1024);
	memset(p, 0, sizeof(*p));
	p->size = (size + 7) & ~(size_t)7;
	p->per_block = (BLOCK_BYTES - HEADER) / p->size;
}

void *gn_pool_get(gn_pool *p)
{
	void *rec;
	if (p->free) {
		rec = p->free;
		UNPOISON(rec, p->size);
		memcpy(&p->free, rec, sizeof(void *));
	} else {
		if (!p->left) {
			char *b = gn_malloc(BLOCK_BYTES);
			memcpy(b, &p->blocks, sizeof(void *));
			p->blocks = b;
			p->left = p->per_block;
			p->nblocks++;
			POISON(b + HEADER, BLOCK_BYTES - HEADER);
		}
		rec = (char *)p->blocks + HEADER + (p->per_block - p->left) * p->size;
		p->left--;
		UNPOISON(rec, p->size);
	}
	memset(rec, 0, p->size);
	p->in_use++;
	return rec;
}

void gn_pool_put(gn_pool *p, void *rec)
{
	if (!rec)
		return;
	assert(p->in_use > 0);
	memcpy(rec, &p->free, sizeof(void *));
	/* The link stays readable; the rest of the record is poisoned. */
	POISON((char *)rec + sizeof(void *), p->size - sizeof(void *));
	p->free = rec;
	p->in_use--;
}

void gn_pool_cleanup(gn_pool *p)
{
	char *b = p->blocks;
	while (b) {
		char *prev;
		UNPOISON(b, BLOCK_BYTES);
		memcpy(&prev, b, sizeof(void *));
		free(b);
		b = prev;
	}
	gn_pool_init(p, p->size);
}

size_t gn_pool_bytes(const gn_pool *p)
{
	return p->nblocks * BLOCK_BYTES;
}
