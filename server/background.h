/* The replica's own background thread (each replica runs it for itself; no advisory lock, unlike
 * jobs.c): writes the buffered last-seen times once a second (last_seen.c) and reloads the device
 * token revocation state when the NOTIFY listener (re)connects (device_tokens.c). Jobs layer. */
#ifndef GD_BACKGROUND_H
#define GD_BACKGROUND_H

#include "db.h"

/* Starts the thread; it takes connections from pool (borrowed). */
int background_start(db_pool *pool, gn_err *err) GN_WUR;
/* Wakes the thread now (the listener has (re)connected). */
void background_wake(void);
/* Stops the thread and writes what is still buffered (a clean stop loses no last-seen time). */
void background_stop(void);

#endif
