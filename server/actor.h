/* Who acts: an API token holder, a device, or the server itself (the rollout controller, GitOps,
 * start-up). Domain functions take an actor instead of a request, so every caller goes through the
 * same rules and the audit row names who did it. */
#ifndef GD_ACTOR_H
#define GD_ACTOR_H

#include <stddef.h>

/* Scopes an API token may hold; a route or action needs any one of the bits it lists. */
enum gd_scope {
	GD_SCOPE_PUBLIC = 0,
	GD_SCOPE_ADMIN = 1 << 0,
	GD_SCOPE_OPERATOR = 1 << 1,
	GD_SCOPE_CI = 1 << 2,
	GD_SCOPE_READ = 1 << 3,
	GD_SCOPE_DEVICE = 1 << 8,   /* a device's bearer token; only for /v1/agent routes */
	GD_SCOPE_ANON_TUF = 1 << 9, /* also open without a token while tuf-anonymous-read is on */
};

enum gd_actor_kind {
	GD_ACTOR_NONE,   /* not authenticated (public routes) */
	GD_ACTOR_TOKEN,  /* an API token: id and name are the token's */
	GD_ACTOR_DEVICE, /* a device: id is the device id */
	GD_ACTOR_SYSTEM, /* gangliond itself: name says which part ("controller", "gitops", ...) */
};

struct gd_actor {
	enum gd_actor_kind kind;
	char id[40];         /* token id or device id; empty otherwise */
	char name[72];       /* token name, or the system part's name */
	unsigned scopes;     /* GD_SCOPE_* bits */
	char request_id[41]; /* the HTTP request, or the git commit a GitOps sync applies, behind the
			      * action, if any (for the audit log) */
};

/* Fills out as the server part `name` acting on its own, with every scope. */
void actor_system(struct gd_actor *out, const char *name);
/* Writes how the audit log names the actor ("token:ci", "device:UUID", "controller") into out. */
void actor_label(char *out, size_t n, const struct gd_actor *a);

#endif
