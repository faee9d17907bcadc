/* GET /v1/audit: the audit log, newest first, filtered by actor, action, object and time. */
#include "audit.h"
#include "http.h"

static void http_audit_list(struct gd_req *r)
{
	struct audit_filter f;
	gn_err err;
	if (audit_filter_parse(&f, gd_query(r, "actor"), gd_query(r, "action"), gd_query(r, "object"),
			       gd_query(r, "since"), gd_query(r, "until"), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	const char *p[] = {f.actor, f.action, f.object, f.since, f.until};
	gd_list(r, &audit_list_stmt, CURSOR_INT, p, 5);
}

const struct gd_route http_audit_routes[] = {
	{"GET", "/v1/audit", GD_SCOPE_ADMIN, http_audit_list, NULL},
};
const size_t http_audit_nroutes = GN_ARRAY_LEN(http_audit_routes);
