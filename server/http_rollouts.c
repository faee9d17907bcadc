/* /v1/rollouts: thin handlers over rollouts.c (status, events, operator actions). */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "rollouts.h"

static void http_rollouts_list(struct gd_req *r)
{
	const char *p[] = {gd_query(r, "deployment")};
	gd_list(r, &rollouts_list_stmt, CURSOR_TEXT, p, 1);
}

static void http_rollouts_get(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = rollouts_get(&out, gd_db(r), gd_param(r, 0), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_rollouts_events(struct gd_req *r)
{
	const char *id = gd_param(r, 0);
	if (!gn_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such rollout");
		return;
	}
	gd_list(r, &rollouts_events_stmt, CURSOR_INT, &id, 1);
}

static void http_rollouts_action(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = rollouts_action(&out, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

const struct gd_route http_rollouts_routes[] = {
	{"GET", "/v1/rollouts", GD_SCOPE_READ, http_rollouts_list, NULL},
	{"GET", "/v1/rollouts/{id}", GD_SCOPE_READ, http_rollouts_get, NULL},
	{"GET", "/v1/rollouts/{id}/events", GD_SCOPE_READ, http_rollouts_events, NULL},
	{"POST", "/v1/rollouts/{id}/{action}", GD_SCOPE_OPERATOR, http_rollouts_action, NULL},
};
const size_t http_rollouts_nroutes = GN_ARRAY_LEN(http_rollouts_routes);
