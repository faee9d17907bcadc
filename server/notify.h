/* One LISTEN connection to PostgreSQL for the whole server, with a callback per channel. Store
 * layer. Notifications reach every replica, whichever of them (or which SQL trigger) sent them. */
#ifndef GD_NOTIFY_H
#define GD_NOTIFY_H

#include <stdbool.h>

#include "common.h"

struct notify_channel {
	const char *channel; /* a fixed identifier from the code, never input */
	/* Runs on the listener thread for each notification; payload is borrowed. */
	void (*on_notify)(const char *payload);
	/* Runs on the listener thread when listening starts (true) or stops (false): while it is
	 * stopped notifications can be missed, so caches must not trust themselves. May be NULL. */
	void (*on_listening)(bool up);
	/* When set, the listener answers each notification of this channel, once handled, with the
	 * same payload on this channel (another entry of the table): whoever sent it learns that this
	 * replica has heard it. May be NULL. */
	const char *ack_channel;
};

/* The application_name of the listener connections, one per running replica (pg_stat_activity
 * counts them). */
#define NOTIFY_APPLICATION_NAME "gangliond listener"

/* Starts the listener thread on its own connection to conninfo, for the channels in chans
 * (borrowed; must outlive notify_stop). It reconnects by itself when the connection drops. */
int notify_start(const char *conninfo, const struct notify_channel *chans, size_t n, gn_err *err) GN_WUR;
/* Stops the listener (reporting "not listening" to each channel) and joins it. */
void notify_stop(void);

#endif
