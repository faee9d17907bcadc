/* The append-only audit log: one row per change, naming the actor who made it. Domain layer. */
#ifndef GD_AUDIT_H
#define GD_AUDIT_H

#include <jansson.h>

#include "actor.h"
#include "db.h"

/* Records that `who` did `action` on object_type/object_id, on c (so inside the caller's
 * transaction when it has one; it opens none). detail may be NULL (reference stolen). */
int audit_write(db_conn *c, const struct gd_actor *who, const char *action, const char *object_type,
		const char *object_id, json_t *detail, gn_err *err) GN_WUR;

/* Runs one change and its audit row in a transaction of its own: st with params, GN_ENOTFOUND
 * with the message `missing` when it touches no row, the audit row (detail stolen), commit. On
 * success *out holds st's rows (PQclear it). */
int audit_change(PGresult **out, db_conn *c, const struct gd_actor *who, const db_stmt *st, const char *const *params,
		 const char *missing, const char *action, const char *object_type, const char *object_id,
		 json_t *detail, gn_err *err) GN_WUR;

#endif
