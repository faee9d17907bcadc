/* key=value logging with a per-thread context prefix. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum gn_log_level min_level = GN_LOG_INFO;
static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static _Thread_local char log_ctx[96];

static const char *level_names[] = {"debug", "info", "warn", "error"};

void gn_log_set_level(enum gn_log_level level)
{
	min_level = level;
}

int gn_log_level_parse(enum gn_log_level *out, const char *s)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(level_names); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum gn_log_level)i;
			return 0;
		}
	}
	return GN_EINVAL;
}

int gn_log_open(const char *path, gn_err *err)
{
	FILE *f = NULL;
	if (path && *path) {
		f = fopen(path, "ae");
		if (!f)
			return gn_err_set(err, GN_ERROR, "cannot open log file %s", path);
		setvbuf(f, NULL, _IOLBF, 0);
	}
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = f;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void gn_log_set_context(const char *kv)
{
	if (!kv)
		log_ctx[0] = '\0';
	else
		snprintf(log_ctx, sizeof(log_ctx), "%s", kv);
}

void gn_log(enum gn_log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char line[2048];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s%s%s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, level_names[level], log_ctx[0] ? " " : "", log_ctx);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&log_lock);
	FILE *f = log_file ? log_file : stderr;
	fprintf(f, "%s\n", line);
	pthread_mutex_unlock(&log_lock);
}
