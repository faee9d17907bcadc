/* The server-wide state shared by gangliond's modules. */
#ifndef GANGLIOND_H
#define GANGLIOND_H

#include <stdatomic.h>

#include "config.h"
#include "db.h"

struct gd_server {
	struct gd_config cfg;
	db_pool *pool;
	/* Settings that SIGHUP may change while request threads read them. */
	_Atomic int64_t max_body;
	_Atomic int64_t max_json_depth;
	_Atomic int64_t device_token_ttl;
	_Atomic int64_t challenge_ttl;
	_Atomic int64_t max_artifact_size;
	_Atomic int64_t agent_poll_interval;
};

extern struct gd_server gd;

#endif
