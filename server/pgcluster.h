/* The private PostgreSQL cluster gangliond runs under DATA_DIR/pg when no database URL is set:
 * initdb on first start, pg_ctl start on a Unix socket inside the data directory, stop on exit.
 * PostgreSQL refuses to run as root, so as root it runs as an unprivileged user. */
#ifndef GD_PGCLUSTER_H
#define GD_PGCLUSTER_H

#include "common.h"

typedef struct pgcluster pgcluster;

/* Initialises (if needed) and starts the cluster; *out_conninfo is a new libpq conninfo for the
 * "ganglion" database. bindir and user may be empty for the defaults. */
int pgcluster_start(pgcluster **out, char **out_conninfo, const char *data_dir, const char *bindir, const char *user,
		    gn_err *err) GN_WUR;
/* Stops the cluster (fast shutdown) and frees it; NULL is fine. */
void pgcluster_stop(pgcluster *pc);

#endif
