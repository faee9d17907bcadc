/* The LISTEN thread: one connection, every channel, reconnecting after a loss. */
#include "notify.h"

#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "db.h"
#include "log.h"

static pthread_t listener;
static _Atomic bool stopping;
static char *conninfo_;
static const struct notify_channel *chans_;
static size_t nchans;

static void report(bool up)
{
	for (size_t i = 0; i < nchans; i++)
		if (chans_[i].on_listening)
			chans_[i].on_listening(up);
}

static void dispatch(PGconn *c, const PGnotify *n)
{
	for (size_t i = 0; i < nchans; i++) {
		if (strcmp(chans_[i].channel, n->relname) != 0)
			continue;
		chans_[i].on_notify(n->extra);
		if (chans_[i].ack_channel) {
			const char *p[] = {chans_[i].ack_channel, n->extra};
			PGresult *res = PQexecParams(c, "SELECT pg_notify($1, $2)", 2, NULL, p, NULL, NULL, 0);
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				gn_log(GN_LOG_WARN, "event=notify_ack_failed channel=%s", chans_[i].channel);
			PQclear(res);
		}
	}
}

/* Connects and LISTENs on every channel; NULL on failure. */
static PGconn *connect_listening(void)
{
	/* Bounded, so that a database that stopped answering cannot hold up the shutdown. */
	int64_t timeout_s = config_get() ? config_get()->db_connect_timeout : 0;
	PGconn *c = db_connect(conninfo_, timeout_s);
	gn_err err;
	if (PQstatus(c) == CONNECTION_OK &&
	    db_pg_run(c, "SET application_name = '" NOTIFY_APPLICATION_NAME "'", timeout_s * 1000, &err)) {
		PQfinish(c);
		return NULL;
	}
	for (size_t i = 0; PQstatus(c) == CONNECTION_OK && i < nchans; i++) {
		char *id = PQescapeIdentifier(c, chans_[i].channel, strlen(chans_[i].channel));
		char *sql = gn_asprintf("LISTEN %s", id ? id : "\"\"");
		bool ok = db_pg_run(c, sql, timeout_s * 1000, &err) == 0;
		free(sql);
		PQfreemem(id);
		if (!ok)
			break;
		if (i + 1 == nchans)
			return c;
	}
	PQfinish(c);
	return NULL;
}

/* Serves one connection until it drops or the server stops. */
static void serve(PGconn *c)
{
	while (!atomic_load(&stopping)) {
		struct pollfd pfd = {.fd = PQsocket(c), .events = POLLIN};
		if (poll(&pfd, 1, 200) < 0)
			continue;
		if (!PQconsumeInput(c))
			return;
		PGnotify *n;
		while ((n = PQnotifies(c))) {
			dispatch(c, n);
			PQfreemem(n);
		}
	}
}

static void *listen_main(void *unused)
{
	(void)unused;
	while (!atomic_load(&stopping)) {
		PGconn *c = connect_listening();
		if (!c) {
			gn_log(GN_LOG_WARN, "event=notify_listen_failed note=\"caches stay off until it works\"");
			for (int i = 0; i < 20 && !atomic_load(&stopping); i++)
				usleep(100000);
			continue;
		}
		report(true);
		serve(c);
		report(false);
		PQfinish(c);
		if (!atomic_load(&stopping))
			gn_log(GN_LOG_WARN, "event=notify_listen_lost");
	}
	return NULL;
}

int notify_start(const char *conninfo, const struct notify_channel *chans, size_t n, gn_err *err)
{
	if (!n)
		return 0;
	conninfo_ = gn_strdup(conninfo);
	chans_ = chans;
	nchans = n;
	atomic_store(&stopping, false);
	if (pthread_create(&listener, NULL, listen_main, NULL) != 0) {
		free(conninfo_);
		conninfo_ = NULL;
		return gn_err_set(err, GN_ERROR, "cannot start the LISTEN/NOTIFY listener thread");
	}
	return 0;
}

void notify_stop(void)
{
	if (!conninfo_)
		return;
	atomic_store(&stopping, true);
	pthread_join(listener, NULL);
	free(conninfo_);
	conninfo_ = NULL;
}
