/* Prometheus metrics: requests by route, method and status; a latency histogram; pool gauges. */
#ifndef GD_METRICS_H
#define GD_METRICS_H

#include "common.h"

#define METRICS_MAX_ROUTES 64

/* Counts one finished request; route_index < 0 for a path that matched no route. Lock-free. */
void metrics_observe(int route_index, int status, uint64_t dur_ns);
/* Appends the Prometheus text exposition to b. */
void metrics_render(gn_buf *b);

#endif
