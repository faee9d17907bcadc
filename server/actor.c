/* Actors: who performs a domain action. */
#include "actor.h"

#include <stdio.h>
#include <string.h>

void actor_system(struct gd_actor *out, const char *name)
{
	memset(out, 0, sizeof(*out));
	out->kind = GD_ACTOR_SYSTEM;
	out->scopes = GD_SCOPE_ADMIN;
	snprintf(out->name, sizeof(out->name), "%s", name);
}

void actor_label(char *out, size_t n, const struct gd_actor *a)
{
	switch (a->kind) {
	case GD_ACTOR_TOKEN: snprintf(out, n, "token:%s", a->name); break;
	case GD_ACTOR_DEVICE: snprintf(out, n, "device:%s", a->id); break;
	case GD_ACTOR_SYSTEM: snprintf(out, n, "%s", a->name); break;
	default: snprintf(out, n, "anonymous"); break;
	}
}
