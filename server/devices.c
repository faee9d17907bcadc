/* The device inventory. */
#include "devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "json.h"
#include "selector.h"

const db_stmt devices_list_stmt = {"devices_list",
				   "SELECT gn_device_json(d)::text, d.id FROM devices d WHERE" DEVICES_SELECTOR_WHERE
				   "  AND ($6::text IS NULL OR d.status = $6)"
				   "  AND ($7::text IS NULL OR d.name = $7)"
				   "  AND ($8::uuid IS NULL OR d.id > $8::uuid)"
				   " ORDER BY d.id LIMIT $9",
				   9};
static const db_stmt st_get = {"devices_get", "SELECT gn_device_json(d)::text FROM devices d WHERE id = $1", 1};
static const db_stmt st_patch = {
	"devices_patch",
	"UPDATE devices d SET labels = (labels || $2::jsonb) - ARRAY(SELECT jsonb_array_elements_text($3::jsonb)),"
	" name = coalesce($4, name) WHERE id = $1 RETURNING gn_device_json(d)::text",
	4};
/* Also says whether the device was not decommissioned yet (o reads the row as it was before). */
static const db_stmt st_decommission = {
	"devices_decommission",
	"WITH o AS (SELECT status FROM devices WHERE id = $1),"
	" d AS (UPDATE devices SET status = 'decommissioned', decommissioned_at = coalesce(decommissioned_at, now())"
	"   WHERE id = $1 RETURNING *),"
	" s AS (DELETE FROM device_sessions WHERE device_id = $1),"
	" c AS (DELETE FROM device_challenges WHERE device_id = $1)"
	" SELECT gn_device_json(d.*)::text, o.status <> 'decommissioned' FROM d, o",
	1};

int devices_selector_params(char *out[5], const char *selector, gn_err *err)
{
	gn_selector sel;
	int rc = gn_selector_parse(&sel, selector, err);
	if (rc)
		return rc;
	json_t *eqobj = json_object(), *eq = json_array(), *ne = json_array(), *has = json_array(),
	       *nothas = json_array();
	for (size_t i = 0; i < sel.n; i++) {
		gn_selector_term *t = &sel.terms[i];
		switch (t->op) {
		case GN_SEL_EQ:
			json_object_set_new(eqobj, t->key, json_string(t->value));
			json_array_append_new(eq, json_pack("[s,s]", t->key, t->value));
			break;
		case GN_SEL_NE: json_array_append_new(ne, json_pack("[s,s]", t->key, t->value)); break;
		case GN_SEL_HAS: json_array_append_new(has, json_string(t->key)); break;
		case GN_SEL_NOTHAS: json_array_append_new(nothas, json_string(t->key)); break;
		}
	}
	gn_selector_cleanup(&sel);
	json_t *parts[5] = {eqobj, eq, ne, has, nothas};
	for (int i = 0; i < 5; i++) {
		out[i] = gn_json_dump(parts[i]);
		json_decref(parts[i]);
	}
	return 0;
}

int devices_name_check(const char *name, bool allow_empty, gn_err *err)
{
	size_t n = strlen(name);
	if ((n == 0 && !allow_empty) || n > 128)
		return gn_err_set(err, GN_EINVAL, "name must be 1 to 128 characters");
	if (gn_is_uuid(name))
		return gn_err_set(err, GN_EINVAL, "name '%s' looks like a device id; choose a name that does not",
				  name);
	return 0;
}

bool devices_name_taken(const char *name, gn_err *err)
{
	/* The unique index of migrations/0010 on the names of active devices. */
	if (err->code != GN_ECONFLICT || !strstr(err->msg, "devices_active_name_idx"))
		return false;
	gn_err_set(err, GN_ECONFLICT,
		   "an active device is already named '%.128s'; names are unique among active devices", name);
	return true;
}

int devices_get(char **out, db_conn *c, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	*out = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	const char *p[] = {id};
	if ((error = db_exec(&res, c, &st_get, p, err)))
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such device");
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

/* Splits a labels patch into labels to set and keys to delete (null values). */
static int labels_patch(json_t *set, json_t *del, const json_t *labels, gn_err *err)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)labels, k, v) {
		if (gn_label_key_settable(k, err))
			return GN_EINVAL;
		if (json_is_null(v))
			json_array_append_new(del, json_string(k));
		else if (!json_is_string(v))
			return gn_err_set(err, GN_EINVAL, "label values must be strings, or null to remove the label");
		else if (gn_label_value_check(json_string_value(v), err))
			return GN_EINVAL;
		else
			json_object_set(set, k, v);
	}
	return 0;
}

int devices_update(char **out, db_conn *c, const struct gd_actor *who, const char *id, const json_t *req, gn_err *err)
{
	json_t *set = json_object(), *del = json_array();
	PGresult *res = NULL;
	char *s_set = NULL, *s_del = NULL;
	int error;
	const char *name = gn_json_str(req, "name");
	*out = NULL;
	if (!gn_is_uuid(id)) {
		error = gn_err_set(err, GN_ENOTFOUND, "no such device");
		goto out;
	}
	if (name && (error = devices_name_check(name, false, err)))
		goto out;
	if ((error = labels_patch(set, del, json_object_get(req, "labels"), err)))
		goto out;
	s_set = gn_json_dump(set);
	s_del = gn_json_dump(del);
	const char *p[] = {id, s_set, s_del, name};
	if ((error = audit_change(&res, c, who, &st_patch, p, "no such device", "device.update", "device", id,
				  json_deep_copy(req), err))) {
		if (name)
			devices_name_taken(name, err);
		goto out;
	}
	*out = gn_strdup(PQgetvalue(res, 0, 0));
out:
	PQclear(res);
	json_decref(set);
	json_decref(del);
	free(s_set);
	free(s_del);
	return error;
}

int devices_decommission(char **out, bool *out_changed, db_conn *c, const struct gd_actor *who, const char *id,
			 gn_err *err)
{
	PGresult *res = NULL;
	*out = NULL;
	*out_changed = false;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	const char *p[] = {id};
	int error = audit_change(&res, c, who, &st_decommission, p, "no such device", "device.decommission", "device",
				 id, NULL, err);
	if (!error) {
		*out = gn_strdup(PQgetvalue(res, 0, 0));
		*out_changed = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	}
	PQclear(res);
	return error;
}
