/* The append-only audit log: one row per change, naming the actor who made it. Domain layer. */
#ifndef GD_AUDIT_H
#define GD_AUDIT_H

#include <stdbool.h>

#include <jansson.h>

#include "actor.h"
#include "db.h"

/* Every action the audit log records, in docs/API.md's order. audit_write takes no other (an
 * assertion: a new action is added here first); tests/unit/server/test_audit checks that docs/API.md
 * and api/openapi.yaml list exactly these. */
extern const char *const audit_actions[];
extern const size_t audit_nactions;

/* Returns whether action is one of audit_actions. */
bool audit_action_known(const char *action);

/* Records that `who` did `action` (one of audit_actions) on object_type/object_id, on c (so inside the caller's
 * transaction when it has one; it opens none). detail may be NULL (reference stolen). */
int audit_write(db_conn *c, const struct gd_actor *who, const char *action, const char *object_type,
		const char *object_id, json_t *detail, gn_err *err) GN_WUR;

/* Runs one change and its audit row in a transaction of its own: st with params, GN_ENOTFOUND
 * with the message `missing` when it touches no row, the audit row (detail stolen), commit. On
 * success *out holds st's rows (PQclear it). */
int audit_change(PGresult **out, db_conn *c, const struct gd_actor *who, const db_stmt *st, const char *const *params,
		 const char *missing, const char *action, const char *object_type, const char *object_id,
		 json_t *detail, gn_err *err) GN_WUR;

/* Pages over the audit log, newest first, filtered: ($1 actor, $2 action, $3 object, $4 since,
 * $5 until: NULL or audit_filter's text; $6 cursor id or NULL, $7 limit) -> (JSON text, id). */
extern const db_stmt audit_list_stmt;

/* What GET /v1/audit filters on, checked; each member is NULL when not given. */
struct audit_filter {
	const char *actor, *action, *object; /* borrowed from the caller */
	const char *since, *until;           /* point into the buffers below */
	char since_buf[24], until_buf[24];   /* epoch seconds */
};
/* Fills out from the query's values (each may be NULL): actor, action and object at most 200
 * characters and not empty; since and until RFC 3339 times (2026-01-02T15:04:05Z, with an offset
 * or fractional seconds, or a date alone for its midnight UTC), since not after until.
 * GN_EINVAL naming the parameter otherwise. */
int audit_filter_parse(struct audit_filter *out, const char *actor, const char *action, const char *object,
		       const char *since, const char *until, gn_err *err) GN_WUR;

#endif
