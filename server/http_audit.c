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

void http_audit_list(struct gd_req *r)
{
	PGresult *res = NULL;
	gn_err err;
	int limit;
	const char *cursor;
	char lim[16];
	if (gd_page_args(&limit, &cursor, r))
		return;
	if (cursor) {
		char *end;
		long long v = strtoll(cursor, &end, 10);
		if (*end || v <= 0) {
			gd_reply_problem(r, 400, "bad cursor");
			return;
		}
	}
	snprintf(lim, sizeof(lim), "%d", limit + 1);
	const char *p[] = {cursor, lim};
	if (db_exec(&res, gd_db(r), &st_list, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_page(r, res, limit);
	PQclear(res);
}
