/* Prometheus metrics: requests by route, method and status; a latency histogram; pool gauges. */
#ifndef GD_HTTP_METRICS_H
#define GD_HTTP_METRICS_H

#include "common.h"

#define HTTP_METRICS_MAX_ROUTES 96

/* Counts one finished request; route_index < 0 for a path that matched no route. Lock-free. */
void http_metrics_observe(int route_index, int status, uint64_t dur_ns);
/* Appends the Prometheus text exposition to b. */
void http_metrics_render(gn_buf *b);

#endif
