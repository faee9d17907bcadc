/* The server-wide state shared by gangliond's modules: the database pool. Settings are not here:
 * they are read from the running configuration snapshot (config_get, config.h). */
#ifndef GANGLIOND_H
#define GANGLIOND_H

#include "config.h"
#include "db.h"

struct gd_server {
	db_pool *pool;
};

extern struct gd_server gd;

#endif
