/* Lock-free request counters and a latency histogram, rendered in Prometheus text format. */
#include "http_metrics.h"

#include <stdatomic.h>

#include "checkin_cache.h"
#include "gangliond.h"
#include "http.h"
#include "last_seen.h"

static _Atomic uint64_t counts[HTTP_METRICS_MAX_ROUTES + 1][600];
static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
static _Atomic uint64_t buckets[GN_ARRAY_LEN(bounds) + 1];
static _Atomic uint64_t sum_ns, total;

void http_metrics_observe(int route_index, int status, uint64_t dur_ns)
{
	int ri = route_index < 0 || route_index >= HTTP_METRICS_MAX_ROUTES ? HTTP_METRICS_MAX_ROUTES : route_index;
	if (status < 100 || status > 599)
		status = 599;
	atomic_fetch_add_explicit(&counts[ri][status], 1, memory_order_relaxed);
	double s = (double)dur_ns / 1e9;
	size_t b = 0;
	while (b < GN_ARRAY_LEN(bounds) && s > bounds[b])
		b++;
	atomic_fetch_add_explicit(&buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&sum_ns, dur_ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&total, 1, memory_order_relaxed);
}

void http_metrics_render(gn_buf *b)
{
	size_t nroutes;
	const struct gd_route *routes = http_routes(&nroutes);

	gn_buf_puts(b, "# HELP gangliond_http_requests_total HTTP requests answered, by route, method and status.\n"
		       "# TYPE gangliond_http_requests_total counter\n");
	for (size_t r = 0; r <= HTTP_METRICS_MAX_ROUTES; r++) {
		if (r < HTTP_METRICS_MAX_ROUTES && r >= nroutes)
			continue;
		for (int s = 100; s < 600; s++) {
			uint64_t v = atomic_load_explicit(&counts[r][s], memory_order_relaxed);
			if (!v)
				continue;
			gn_buf_printf(b,
				      "gangliond_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} %llu\n",
				      r < nroutes ? routes[r].pattern : "unmatched",
				      r < nroutes ? routes[r].method : "", s, (unsigned long long)v);
		}
	}
	gn_buf_puts(b, "# HELP gangliond_http_request_duration_seconds Time from request start to response queued.\n"
		       "# TYPE gangliond_http_request_duration_seconds histogram\n");
	uint64_t cum = 0;
	for (size_t i = 0; i < GN_ARRAY_LEN(bounds); i++) {
		cum += atomic_load_explicit(&buckets[i], memory_order_relaxed);
		gn_buf_printf(b, "gangliond_http_request_duration_seconds_bucket{le=\"%g\"} %llu\n", bounds[i],
			      (unsigned long long)cum);
	}
	cum += atomic_load_explicit(&buckets[GN_ARRAY_LEN(bounds)], memory_order_relaxed);
	gn_buf_printf(b, "gangliond_http_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	gn_buf_printf(b, "gangliond_http_request_duration_seconds_sum %.6f\n",
		      (double)atomic_load_explicit(&sum_ns, memory_order_relaxed) / 1e9);
	gn_buf_printf(b, "gangliond_http_request_duration_seconds_count %llu\n",
		      (unsigned long long)atomic_load_explicit(&total, memory_order_relaxed));

	int size = 0, in_use = 0;
	uint64_t waits = 0;
	if (gd.pool)
		db_pool_stats(gd.pool, &size, &in_use, &waits);
	gn_buf_printf(b,
		      "# HELP gangliond_db_pool_connections PostgreSQL connections in the pool.\n"
		      "# TYPE gangliond_db_pool_connections gauge\n"
		      "gangliond_db_pool_connections %d\n"
		      "# HELP gangliond_db_pool_in_use PostgreSQL connections serving a request now.\n"
		      "# TYPE gangliond_db_pool_in_use gauge\n"
		      "gangliond_db_pool_in_use %d\n"
		      "# HELP gangliond_db_pool_waits_total Times a request waited for a free connection.\n"
		      "# TYPE gangliond_db_pool_waits_total counter\n"
		      "gangliond_db_pool_waits_total %llu\n",
		      size, in_use, (unsigned long long)waits);

	/* What devices cost in memory here (bench/fleet.sh reads these to know all are cached). */
	size_t cached, cached_bytes, seen, seen_bytes;
	checkin_cache_stats(&cached, &cached_bytes);
	last_seen_stats(&seen, &seen_bytes);
	gn_buf_printf(b,
		      "# HELP gangliond_checkin_cache_devices Devices whose check-in answer is held in memory.\n"
		      "# TYPE gangliond_checkin_cache_devices gauge\n"
		      "gangliond_checkin_cache_devices %zu\n"
		      "# HELP gangliond_checkin_cache_bytes Memory taken by the check-in cache's entries.\n"
		      "# TYPE gangliond_checkin_cache_bytes gauge\n"
		      "gangliond_checkin_cache_bytes %zu\n"
		      "# HELP gangliond_last_seen_devices Devices whose last-seen time is held in memory.\n"
		      "# TYPE gangliond_last_seen_devices gauge\n"
		      "gangliond_last_seen_devices %zu\n"
		      "# HELP gangliond_last_seen_bytes Memory taken by the last-seen records.\n"
		      "# TYPE gangliond_last_seen_bytes gauge\n"
		      "gangliond_last_seen_bytes %zu\n",
		      cached, cached_bytes, seen, seen_bytes);
}
