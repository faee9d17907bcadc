/* Writes audit rows; the table refuses UPDATE, DELETE and TRUNCATE (see 0001_init.sql). */
#include "audit.h"

#include <stdio.h>
#include <stdlib.h>

#include "json.h"

static const db_stmt st_insert = {
	"audit_insert",
	"INSERT INTO audit_log (actor, token_id, action, object_type, object_id, request_id, detail)"
	" VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::jsonb, '{}'))",
	7};

int audit_write(db_conn *c, const struct gd_actor *who, const char *action, const char *object_type,
		const char *object_id, json_t *detail, gn_err *err)
{
	char actor[128];
	char *d = detail ? gn_json_dump(detail) : NULL;
	actor_label(actor, sizeof(actor), who);
	const char *p[] = {actor,     who->kind == GD_ACTOR_TOKEN ? who->id : NULL, action, object_type,
			   object_id, who->request_id[0] ? who->request_id : NULL,  d};
	int rc = db_exec(NULL, c, &st_insert, p, err);
	free(d);
	json_decref(detail);
	return rc;
}

int audit_change(PGresult **out, db_conn *c, const struct gd_actor *who, const db_stmt *st, const char *const *params,
		 const char *missing, const char *action, const char *object_type, const char *object_id,
		 json_t *detail, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	*out = NULL;
	if ((error = db_tx_begin(c, err)) || (error = db_exec(&res, c, st, params, err)))
		goto out;
	if (PQntuples(res) == 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "%s", missing);
		goto out;
	}
	error = audit_write(c, who, action, object_type, object_id, detail, err);
	detail = NULL;
	if (!error)
		error = db_tx_commit(c, err);
out:
	json_decref(detail);
	if (error) {
		db_tx_rollback(c);
		PQclear(res);
		return error;
	}
	*out = res;
	return 0;
}
