/* Schema migrations embedded from migrations/NNNN_name.sql at build time. */
#ifndef GD_MIGRATE_H
#define GD_MIGRATE_H

#include "db.h"

struct migration {
	int version;
	const char *name;
	const char *sql;
};

extern const struct migration gd_migrations[];
extern const int gd_migrations_count;

/* Applies every pending migration in order, each in its own transaction, under an advisory lock
 * so that replicas starting together apply each once. An applied migration whose text changed
 * since (checksum mismatch) is an error. */
int migrate_run(db_conn *c, gn_err *err) GN_WUR;
/* Checks that the database has every migration this binary knows; GN_EUNAVAIL otherwise. */
int migrate_check(db_conn *c, gn_err *err) GN_WUR;

#endif
