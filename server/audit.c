/* Writes audit rows; the table refuses UPDATE, DELETE and TRUNCATE (see 0001_init.sql). */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>

static const db_stmt st_insert = {
	"audit_insert",
	"INSERT INTO audit_log (actor, token_id, action, object_type, object_id, request_id, detail)"
	" VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::jsonb, '{}'))",
	7};

int audit_write(struct gd_req *r, const char *action, const char *object_type, const char *object_id,
		json_t *detail, gn_err *err)
{
	char actor[128];
	char *d = detail ? gn_json_dump(detail) : NULL;
	switch (r->auth.kind) {
	case AUTH_TOKEN: snprintf(actor, sizeof(actor), "token:%s", r->auth.name); break;
	case AUTH_DEVICE: snprintf(actor, sizeof(actor), "device:%s", r->auth.device_id); break;
	default: snprintf(actor, sizeof(actor), "anonymous"); break;
	}
	const char *p[] = {actor, r->auth.kind == AUTH_TOKEN ? r->auth.token_id : NULL, action, object_type,
			   object_id, r->id, d};
	int rc = db_exec(NULL, gd_db(r), &st_insert, p, err);
	free(d);
	json_decref(detail);
	return rc;
}

int audit_change(PGresult **out, struct gd_req *r, const db_stmt *st, const char *const *params, const char *missing,
		 const char *action, const char *object_type, const char *object_id, json_t *detail)
{
	PGresult *res = NULL;
	gn_err err;
	*out = NULL;
	if (db_exec_sql(gd_db(r), "BEGIN", &err) || db_exec(&res, gd_db(r), st, params, &err)) {
		json_decref(detail);
		gd_reply_error(r, &err);
		goto fail;
	}
	if (PQntuples(res) == 0) {
		json_decref(detail);
		gd_reply_problem(r, 404, missing);
		goto fail;
	}
	if (audit_write(r, action, object_type, object_id, detail, &err) || db_exec_sql(gd_db(r), "COMMIT", &err)) {
		gd_reply_error(r, &err);
		goto fail;
	}
	*out = res;
	return 0;
fail:
	/* The request's connection rolls back what is left open when it goes back to the pool. */
	PQclear(res);
	return GN_ERROR;
}
