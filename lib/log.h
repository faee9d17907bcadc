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
/* Sets this thread's context fields (e.g. "req=3f2a"), copied (up to 95 bytes); NULL clears it.
 * Control bytes and invalid UTF-8 in it are escaped as in values. */
void gn_log_set_context(const char *kv);
/* Whether a line at level would be written (to skip building what only such a line needs). */
bool gn_log_enabled(enum gn_log_level level);
/* Writes one line: ts, level, this thread's context, then the key=value fields of fmt. The format
 * is trusted; every %s (and %c) value is escaped, so callers pass raw strings:
 *  - inside the format's quotes (msg=\"%s\"): " \ newline CR tab as \" \\ \n \r \t, other
 *    control bytes, DEL and bytes that are not valid UTF-8 as \xNN;
 *  - outside them (model=%s): as it is when it is one plain word, else quoted and escaped so it
 *    stays one field (model="a b").
 * So a %s must hold a value, never field syntax (" aborted=true", "detail=\""). Lines are cut at
 * 2048 bytes between characters, ending `..." truncated=true`. Numbers are printf's. */
void gn_log(enum gn_log_level level, const char *fmt, ...) GN_PRINTF(2, 3);

#endif
