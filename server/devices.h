/* The device inventory: label selectors, label edits, decommissioning. Domain layer. */
#ifndef GD_DEVICES_H
#define GD_DEVICES_H

#include <jansson.h>

#include "actor.h"
#include "db.h"

/* The one SQL condition that matches devices `d` against a label selector, with its terms in
 * parameters $1..$5 as made by devices_selector_params. Every statement that selects devices by
 * selector uses it (one fixed statement serves every selector: the terms travel as JSON).
 * $1 (equalities as an object) lets the GIN index narrow the scan; $2 re-checks them as pairs so
 * that "site=a,site=b" matches nothing, as it should. */
#define DEVICES_SELECTOR_WHERE                                                                                                   \
	" d.selectable @> $1::jsonb"                                                                                             \
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($2::jsonb) e WHERE d.selectable->>(e->>0) IS DISTINCT FROM e->>1)" \
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) e WHERE d.selectable->>(e->>0) = e->>1)"                \
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($4::jsonb) k WHERE NOT d.selectable ? k)"                     \
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($5::jsonb) k WHERE d.selectable ? k)"

/* Pages over devices: ($1..$5 selector, $6 status or NULL, $7 name or NULL, $8 cursor uuid or NULL,
 * $9 limit). */
extern const db_stmt devices_list_stmt;

/* Turns a label selector into the five JSON parameters of DEVICES_SELECTOR_WHERE (equalities as
 * an object and as pairs, inequalities as pairs, has and has-not as key lists); out[] are new.
 * GN_EINVAL naming the bad term. */
int devices_selector_params(char *out[5], const char *selector, gn_err *err) GN_WUR;
/* Checks a device name: 1 to 128 characters (or empty, when allow_empty: no name), and not shaped
 * like a device id, so that a command line can take either. GN_EINVAL otherwise. Pure. */
int devices_name_check(const char *name, bool allow_empty, gn_err *err) GN_WUR;
/* True when err (a GN_ECONFLICT from the database) is the name being taken by another active
 * device; err then says so clearly. */
bool devices_name_taken(const char *name, gn_err *err);
/* Returns the device's JSON text (new); GN_ENOTFOUND when there is none. No transaction. */
int devices_get(char **out, db_conn *c, const char *id, gn_err *err) GN_WUR;
/* Applies {"labels": {k: v or null}, "name"} (a checked request) to the device; *out is its new
 * JSON text (new). Own transaction, audited. */
int devices_update(char **out, db_conn *c, const struct gd_actor *who, const char *id, const json_t *req,
		   gn_err *err) GN_WUR;
/* Decommissions the device and ends its sessions; *out is its JSON text (new), *out_changed
 * whether it was active until now (else nothing changed and no replica is notified). Own
 * transaction, audited. */
int devices_decommission(char **out, bool *out_changed, db_conn *c, const struct gd_actor *who, const char *id,
			 gn_err *err) GN_WUR;

#endif
