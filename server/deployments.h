/* Deployments: standing rules — a model, a device selector, the version or alias to follow, a
 * rollout strategy — that apply to every matching device, now and later. The controller
 * (rollouts.c) turns them into what each device should run. Domain layer. */
#ifndef GD_DEPLOYMENTS_H
#define GD_DEPLOYMENTS_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "json.h"

/* Request fields of a create ({"name", "model", "selector", "follow", "strategy"}) and of an
 * update ({"follow", "selector", "strategy"}), for gn_json_check. */
extern const gn_json_field deployments_create_fields[];
extern const size_t deployments_create_nfields;
extern const gn_json_field deployments_update_fields[];
extern const size_t deployments_update_nfields;
/* Pages over deployments: ($1 cursor name or NULL, $2 limit) -> (JSON text, name). */
extern const db_stmt deployments_list_stmt;

/* Creates a deployment from a checked request. Its first version goes to every matching device
 * at once (there is nothing to compare a canary with); later changes roll out by its strategy.
 * GN_EINVAL for a bad name, selector or strategy; GN_ENOTFOUND for an unknown model, version or
 * alias; GN_ECONFLICT for a name taken or devices that another deployment of the same model
 * already covers (named): a device runs several models, one deployment each.
 * *out is its JSON text (new). Opens its own transaction, audited; wakes the controller. */
int deployments_create(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err) GN_WUR;
/* Same, inside the caller's transaction (GitOps applies a commit in one). */
int deployments_create_tx(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err) GN_WUR;
/* Returns a deployment's JSON text (new), with its active rollout if any; GN_ENOTFOUND. A read. */
int deployments_get(char **out, db_conn *c, const char *name, gn_err *err) GN_WUR;
/* Changes what a deployment follows, its selector or its strategy. A new version to follow
 * starts a rollout by the deployment's strategy (GN_ECONFLICT while one is in progress).
 * *out is its JSON text (new). Opens its own transaction, audited. */
int deployments_update(char **out, db_conn *c, const struct gd_actor *who, const char *name, const json_t *req,
		       gn_err *err) GN_WUR;
/* Same, inside the caller's transaction. */
int deployments_update_tx(char **out, db_conn *c, const struct gd_actor *who, const char *name, const json_t *req,
			  gn_err *err) GN_WUR;
/* Deletes a deployment, its rollouts, and what it told devices to run: their agents unload the
 * model at their next check-in (their other models stay). Opens its own transaction, audited. */
int deployments_delete(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err) GN_WUR;
/* Same, inside the caller's transaction. */
int deployments_delete_tx(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err) GN_WUR;
/* The controller's bookkeeping for one deployment, before it writes what devices should run:
 * the rows of active devices its selector no longer matches are marked stale (another deployment
 * of the model may take them over; matching again unmarks them) and removed once stale for three
 * controller intervals (at least a minute); devices its selector matches that run its model from
 * another deployment are recorded as conflicts (shown on the device; a new one audited as
 * device.conflict by who), and its conflicts that no longer hold are dropped. Opens its own
 * transaction; a deployment gone since is not an error. */
int deployments_reconcile(db_conn *c, const struct gd_actor *who, const char *deployment_id, gn_err *err) GN_WUR;

#endif
