/* key=value logging to stderr (journald picks it up) or to a file, with a per-thread context
 * (the request id or device id) added to every line. Safe to call from any thread. */
#ifndef GN_LOG_H
#define GN_LOG_H

#include "common.h"

enum gn_log_level { GN_LOG_DEBUG, GN_LOG_INFO, GN_LOG_WARN, GN_LOG_ERROR };

/* Sets the minimum level printed. */
void gn_log_set_level(enum gn_log_level level);
/* Parses "debug|info|warn|error" into *out; returns 0 or GN_EINVAL. */
int gn_log_level_parse(enum gn_log_level *out, const char *s) GN_WUR;
/* Sends log lines to path (appending) instead of stderr; NULL goes back to stderr. */
int gn_log_open(const char *path, gn_err *err) GN_WUR;
/* Sets this thread's context fields (e.g. "req=3f2a"), copied; NULL clears it. */
void gn_log_set_context(const char *kv);
/* Writes one line: ts, level, this thread's context, then the formatted key=value fields. */
void gn_log(enum gn_log_level level, const char *fmt, ...) GN_PRINTF(2, 3);

#endif
