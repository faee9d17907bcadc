/* GET /healthz, /readyz and /metrics. */
#include <stdio.h>

#include "alerts.h"
#include "gangliond.h"
#include "http.h"
#include "http_metrics.h"
#include "log.h"
#include "migrate.h"

/* Liveness: answered from memory, never waits on the database. */
static void http_health_healthz(struct gd_req *r)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	gd_reply_raw(r, 200, "application/json", ok, sizeof(ok) - 1);
}

static void http_health_readyz(struct gd_req *r)
{
	static const char ready[] = "{\"status\":\"ready\"}";
	char why[200], detail[260];
	gn_err err;
	/* The monitor's verdict first: a database that does not answer is named at once. */
	if (db_pool_down(gd.pool, why, sizeof(why))) {
		snprintf(detail, sizeof(detail), "database unavailable: %s", why);
		gd_header(r, "Retry-After", "5");
		gd_reply_problem(r, 503, detail);
		return;
	}
	db_conn *c = gd_db(r);
	if (db_exec_sql(c, "SELECT 1", &err) || migrate_check(c, &err)) {
		snprintf(detail, sizeof(detail), "database: %.240s", err.msg);
		gd_header(r, "Retry-After", "5");
		gd_reply_problem(r, 503, detail);
		return;
	}
	gd_reply_raw(r, 200, "application/json", ready, sizeof(ready) - 1);
}

static void http_health_metrics(struct gd_req *r)
{
	gn_buf b;
	gn_err err;
	gn_buf_init(&b);
	http_metrics_render(&b);
	/* The alerts come from the database; without it the rest is still worth a scrape. */
	if (!db_pool_down(gd.pool, NULL, 0) && alerts_metrics(&b, gd_db(r), &err))
		gn_log(GN_LOG_WARN, "event=metrics_alerts_failed msg=\"%s\"", err.msg);
	gd_reply_raw(r, 200, "text/plain; version=0.0.4", b.data, b.len);
	gn_buf_cleanup(&b);
}

const struct gd_route http_health_routes[] = {
	{"GET", "/healthz", GD_SCOPE_PUBLIC, http_health_healthz, NULL},
	{"GET", "/readyz", GD_SCOPE_PUBLIC, http_health_readyz, NULL},
	{"GET", "/metrics", GD_SCOPE_PUBLIC, http_health_metrics, NULL},
};
const size_t http_health_nroutes = GN_ARRAY_LEN(http_health_routes);
