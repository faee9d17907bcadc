/* The fleet at a glance: per model, how many devices run and should run each version, how many
 * are updating, failing (and why) or stale, and the rollouts in progress. Domain layer. */
#ifndef GD_STATUS_H
#define GD_STATUS_H

#include "db.h"

/* How long a device may go unseen before it counts as stale: three check-in intervals, and at
 * least a minute (a device's last-seen time is written at most every 30 seconds). Pure. */
int64_t status_stale_after(int64_t poll_interval_s);

/* Returns the fleet's status as JSON text (new), computed in one statement; a device unseen for
 * stale_after_s seconds (or never) is stale. A read. */
int status_get(char **out, db_conn *c, int64_t stale_after_s, gn_err *err) GN_WUR;

#endif
