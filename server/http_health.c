/* GET /healthz, /readyz and /metrics. */
#include <pthread.h>
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

/* The alerts' part of /metrics comes from the database: it is read at most once per
 * METRICS_ALERTS_TTL_NS per process and shared by the scrapes in between, so a client that asks
 * for the public /metrics in a loop costs the database nothing more. */
#define METRICS_ALERTS_TTL_NS (5ULL * 1000 * 1000 * 1000)
static pthread_mutex_t alerts_lock = PTHREAD_MUTEX_INITIALIZER;
static gn_buf alerts_text;      /* guarded by alerts_lock */
static uint64_t alerts_read_ns; /* when alerts_text was read; 0: never */

static void metrics_alerts(gn_buf *out, struct gd_req *r)
{
	gn_err err;
	pthread_mutex_lock(&alerts_lock);
	uint64_t now = gn_mono_ns();
	if (!alerts_read_ns || now - alerts_read_ns >= METRICS_ALERTS_TTL_NS) {
		/* Without the database the rest is still worth a scrape. */
		gn_buf fresh;
		gn_buf_init(&fresh);
		if (db_pool_down(gd.pool, NULL, 0)) {
			gn_buf_cleanup(&alerts_text);
		} else if (alerts_metrics(&fresh, gd_db(r), &err)) {
			gn_log(GN_LOG_WARN, "event=metrics_alerts_failed msg=\"%s\"", err.msg);
			gn_buf_cleanup(&alerts_text);
		} else {
			gn_buf_cleanup(&alerts_text);
			alerts_text = fresh;
			gn_buf_init(&fresh);
			alerts_read_ns = now;
		}
		gn_buf_cleanup(&fresh);
	}
	gn_buf_append(out, alerts_text.data ? alerts_text.data : "", alerts_text.len);
	pthread_mutex_unlock(&alerts_lock);
}

static void http_health_metrics(struct gd_req *r)
{
	gn_buf b;
	gn_buf_init(&b);
	http_metrics_render(&b);
	metrics_alerts(&b, r);
	gd_reply_raw(r, 200, "text/plain; version=0.0.4", b.data, b.len);
	gn_buf_cleanup(&b);
}

void http_health_cleanup(void)
{
	gn_buf_cleanup(&alerts_text);
	alerts_read_ns = 0;
}

const struct gd_route http_health_routes[] = {
	{"GET", "/healthz", GD_SCOPE_PUBLIC, http_health_healthz, NULL},
	{"GET", "/readyz", GD_SCOPE_PUBLIC, http_health_readyz, NULL},
	{"GET", "/metrics", GD_SCOPE_PUBLIC, http_health_metrics, NULL},
};
const size_t http_health_nroutes = GN_ARRAY_LEN(http_health_routes);
