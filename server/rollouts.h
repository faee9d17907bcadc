/* Rollouts: moving one deployment from a version to another in stages, with bake times and health
 * gates, and the controller that drives them (a job: rollouts_tick). A device's place in a rollout
 * is gn_cohort(rollout, device) (migrations/0006_rollouts.sql): it never changes as the fleet
 * grows, and a stage of P percent takes the devices below P / 100. Domain layer. */
#ifndef GD_ROLLOUTS_H
#define GD_ROLLOUTS_H

#include <jansson.h>

#include "actor.h"
#include "db.h"

/* Pages over rollouts, newest first: ($1 deployment name or NULL, $2 cursor or NULL, $3 limit). */
extern const db_stmt rollouts_list_stmt;
/* Pages over a rollout's events, oldest first: ($1 rollout id, $2 cursor id or NULL, $3 limit). */
extern const db_stmt rollouts_events_stmt;

/* Starts a rollout of deployment_id from one version to another with the strategy (its JSON
 * text, as strategy_parse wrote it): waiting for approval if the strategy says so, else running
 * its first stage. Runs inside the caller's transaction (one rollout per deployment at a time:
 * GN_ECONFLICT). Audited. */
int rollouts_start(db_conn *c, const struct gd_actor *who, const char *deployment_id, const char *from, const char *to,
		   const char *strategy, gn_err *err) GN_WUR;
/* Wakes the controller on every replica once the caller's transaction commits (NOTIFY). */
int rollouts_wake(db_conn *c, gn_err *err) GN_WUR;
/* Returns a rollout's JSON text (new) with the progress of its current stage; GN_ENOTFOUND. A read. */
int rollouts_get(char **out, db_conn *c, const char *id, gn_err *err) GN_WUR;
/* Acts on a rollout: "pause", "resume", "promote" (skip the rest of the current stage's bake),
 * "abort" (every device goes back to the version it came from) or "approve" (not by the token
 * that started it: GN_EFORBIDDEN). GN_EINVAL for an unknown action, GN_ECONFLICT when the
 * rollout's state does not allow it. *out is its JSON text (new). Opens its own transaction,
 * audited. */
int rollouts_action(char **out, db_conn *c, const struct gd_actor *who, const char *id, const char *action,
		    gn_err *err) GN_WUR;
/* A dry run: the devices a rollout of deployment `name` would reach at each of its stages, creating
 * nothing. *out is {"deployment", "devices", "stages": [{"percent", "devices"}]} (new). A read. */
int rollouts_plan(json_t **out, db_conn *c, const char *name, gn_err *err) GN_WUR;
/* Tells whether the device is in the current stage of a running rollout (of a deployment it
 * follows): such a device is told to check in faster. A read. */
int rollouts_device_in_stage(bool *out, db_conn *c, const char *device_id, gn_err *err) GN_WUR;
/* The controller, one pass: starts a rollout where an alias a deployment follows has moved, judges
 * the current stage of every running rollout (advance, complete, roll back or pause), and writes
 * what each matching device should run. Idempotent; each step in a transaction of its own. Run by
 * one replica at a time (the job's advisory lock). */
int rollouts_tick(db_conn *c, gn_err *err) GN_WUR;

#endif
