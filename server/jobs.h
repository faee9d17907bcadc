/* The scheduler: one thread runs the periodic work of gangliond from one table (name, interval,
 * advisory-lock key, function). Each run holds a PostgreSQL advisory lock, so with several
 * replicas one of them runs a job at a time; a NOTIFY on channel "gn_jobs" with a job's name (or
 * jobs_wake) runs it early. Jobs layer: the only place that calls domain code on a timer. */
#ifndef GD_JOBS_H
#define GD_JOBS_H

#include <stdbool.h>

#include "config.h"
#include "db.h"

struct job {
	const char *name;
	/* Seconds between runs, read from the running configuration at each run. */
	int64_t (*interval)(const struct gd_config *cfg);
	/* The work; runs on a pooled connection with the job's advisory lock held. */
	int (*fn)(db_conn *c, const struct gd_config *cfg, gn_err *err);
};

/* The jobs, for `gangliond jobs`-style listings and tests. */
const struct job *jobs_table(size_t *out_n);
/* Starts the scheduler thread; jobs take connections from pool (borrowed). */
int jobs_start(db_pool *pool, gn_err *err) GN_WUR;
/* Stops the scheduler, waiting for a job in progress to finish. */
void jobs_stop(void);
/* Runs job `name` at the next chance; false when there is no such job. */
bool jobs_wake(const char *name);
/* The "gn_jobs" channel's callback (notify.h): the payload names the job to wake. */
void jobs_on_notify(const char *payload);

#endif
