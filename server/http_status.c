/* GET /v1/status: the fleet at a glance, a thin handler over status.c. */
#include "config.h"
#include "http.h"
#include "status.h"

static void http_status_get(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = status_get(&out, gd_db(r), status_stale_after(config_get()->agent_poll_interval), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

const struct gd_route http_status_routes[] = {
	{"GET", "/v1/status", GD_SCOPE_READ, http_status_get, NULL},
};
const size_t http_status_nroutes = GN_ARRAY_LEN(http_status_routes);
