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
