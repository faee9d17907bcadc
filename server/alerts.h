/* Drift alert rules and the alerts they open: a rule watches a model (one version or all), one
 * feature or all, a metric (PSI, Jensen-Shannon distance, L-infinity) against a threshold; the
 * alerts job (alerts_tick) judges the fleet's merged counts per window and opens an alert when
 * the rule's last `windows` windows with at least min_samples values each are all above it, and
 * resolves it when they are all at or below it. Opening and resolving are audited. Domain layer. */
#ifndef GD_ALERTS_H
#define GD_ALERTS_H

#include <jansson.h>

#include "actor.h"
#include "db.h"
#include "json.h"

/* The fields of POST /v1/alert-rules. */
extern const gn_json_field alerts_rule_fields[];
extern const size_t alerts_rule_nfields;

/* Creates a rule from a checked request: name (a DNS label), model (published), version (one of
 * its versions; absent: all), feature ("x0" or "input:x0"; checked against the version's profile
 * when a version is named; absent: all), metric psi (default), js or linf, threshold (> 0;
 * default 0.25 for psi, 0.1 for the others), min_samples (default 1000), windows (1-100, default
 * 3), group_by (a label key: judged per value). *out is the rule's JSON text (new). GN_EINVAL,
 * GN_ENOTFOUND (model, version), GN_ECONFLICT (name taken). Own transaction, audited
 * (alert_rule.create). */
int alerts_rule_create(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err) GN_WUR;
/* Deletes rule `name`, resolving its open alerts (each audited alert.resolve); GN_ENOTFOUND. Own
 * transaction, audited (alert_rule.delete). */
int alerts_rule_delete(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err) GN_WUR;
/* Pages over rules by name: ($1 cursor name or NULL, $2 limit) -> (JSON text, name). */
extern const db_stmt alerts_rules_list_stmt;
/* Pages over alerts, newest first: ($1 state open|resolved|all, $2 model or NULL, $3 cursor id or
 * NULL, $4 limit) -> (JSON text, id). */
extern const db_stmt alerts_list_stmt;
/* Checks GET /v1/alerts's filters (state: open, resolved or all; NULL is open); GN_EINVAL. */
int alerts_list_check(const char **out_state, const char *state, const char *model, gn_err *err) GN_WUR;

/* Webhooks: a rule's optional webhook (an http or https URL) gets a JSON POST
 * {"event": "alert.open"|"alert.resolve", "alert": {...as GET /v1/alerts...}, "delivery": ID} when
 * one of its alerts opens or resolves. The delivery is queued in the alert's transaction
 * (alert_deliveries) and sent by alerts_webhooks_tick: a 2xx answer delivers it; anything else is
 * retried after 1, 2, 4, ... seconds (at most an hour apart), ALERTS_WEBHOOK_ATTEMPTS times in all. */
#define ALERTS_WEBHOOK_MAX 2048
#define ALERTS_WEBHOOK_ATTEMPTS 12
#define ALERTS_WEBHOOK_TIMEOUT_S 10
#define ALERTS_WEBHOOK_BATCH 50 /* deliveries sent per run */
/* Sends the deliveries that are due (the alert_webhooks job), one at a time. */
int alerts_webhooks_tick(db_conn *c, gn_err *err) GN_WUR;

/* Appends the open alerts (gangliond_alerts_open, a gauge per rule, model, version, feature and
 * metric; gangliond_alert_value, their largest value) and the webhook deliveries not delivered
 * (gangliond_alert_webhook_deliveries{state}) to b in Prometheus text. A plain read. */
int alerts_metrics(gn_buf *b, db_conn *c, gn_err *err) GN_WUR;

/* Judges every rule at time now (the alerts job): opens and resolves alerts, each in a
 * transaction of its own. Safe to run twice in a row. */
int alerts_tick(db_conn *c, int64_t now, gn_err *err) GN_WUR;

#endif
