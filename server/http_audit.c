/* GET /v1/audit: the audit log, newest first. */
#include <stdio.h>
#include <stdlib.h>

#include "http.h"

static const db_stmt st_list = {
	"audit_list",
	"SELECT jsonb_build_object('id', id, 'at', gn_ts(at), 'actor', actor, 'token_id', token_id,"
	" 'action', action, 'object_type', object_type, 'object_id', object_id, 'request_id', request_id,"
	" 'detail', detail)::text, id::text AS cursor FROM audit_log"
	" WHERE ($1::bigint IS NULL OR id < $1::bigint) ORDER BY audit_log.id DESC LIMIT $2",
	2};

static void http_audit_list(struct gd_req *r)
{
	gd_list(r, &st_list, CURSOR_INT, NULL, 0);
}

const struct gd_route http_audit_routes[] = {
	{"GET", "/v1/audit", GD_SCOPE_ADMIN, http_audit_list, NULL},
};
const size_t http_audit_nroutes = GN_ARRAY_LEN(http_audit_routes);
