/* The append-only audit log: one row per change made through the API. */
#ifndef GD_AUDIT_H
#define GD_AUDIT_H

#include "http.h"

/* Records that r's caller did `action` on object_type/object_id, on r's database connection (so
 * inside the caller's transaction when it has one). detail may be NULL (reference stolen). */
int audit_write(struct gd_req *r, const char *action, const char *object_type, const char *object_id,
		json_t *detail, gn_err *err) GN_WUR;

/* Runs one change and its audit row in a transaction: BEGIN, st with params, 404 `missing` when
 * it touches no row, the audit row (detail stolen), COMMIT. On failure it answers and returns
 * non-zero; on success *out holds st's rows (PQclear it) and the caller answers. */
int audit_change(PGresult **out, struct gd_req *r, const db_stmt *st, const char *const *params, const char *missing,
		 const char *action, const char *object_type, const char *object_id, json_t *detail) GN_WUR;

#endif
