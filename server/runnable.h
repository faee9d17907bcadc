/* Whether devices can run a model version: the version's requirements (lib/requirements.h) against
 * the facts each device reported at check-in. Deployments, assignments and rollouts refuse devices
 * that cannot; a device that has reported no runtime yet is let through (its agent checks again
 * before it downloads and reports a failed install). */
#ifndef GD_RUNNABLE_H
#define GD_RUNNABLE_H

#include <jansson.h>

#include "db.h"

/* The active devices that cannot run model at version: those that sp (selector parameters, see
 * devices_selector_params) matches, or when sp is NULL the one device device_id. *out is a new
 * array of {"device", "name", "reason"} (empty when every device can), *out_unreported the number
 * of those devices that have not reported their runtime yet. GN_ENOTFOUND for no such version.
 * Plain read (runs inside the caller's transaction when there is one). */
int runnable_refused(json_t **out, int *out_unreported, db_conn *c, const char *model, const char *version,
		     char *const sp[5], const char *device_id, gn_err *err) GN_WUR;

/* Refuses with GN_ECONFLICT, naming the devices (at most 10) and why, when any device that
 * runnable_refused would list cannot run model at version. what names the operation in the
 * message ("deployment edge-cams", "assignment"). Plain read. */
int runnable_check(db_conn *c, const char *model, const char *version, char *const sp[5], const char *device_id,
		   const char *what, gn_err *err) GN_WUR;

/* Adds "refused" (runnable_refused's list) and "unreported" (a count) to a deployment's plan, for
 * the version it follows or, when version is not NULL, that version or alias (GN_EINVAL when empty
 * or longer than a version may be, GN_ENOTFOUND when the model has no such version). Plain read. */
int runnable_plan(json_t *plan, db_conn *c, const char *deployment, const char *version, gn_err *err) GN_WUR;

#endif
