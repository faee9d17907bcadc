/* /v1/devices: the inventory, label selectors, label edits, decommissioning. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "http.h"
#include "selector.h"

/* One fixed statement serves every selector: the terms travel as JSON parameters.
 * $2 (equalities as an object) lets the GIN index narrow the scan; $3 re-checks them as pairs so
 * that "site=a,site=b" matches nothing, as it should. */
static const db_stmt st_list = {
	"devices_list",
	"SELECT gn_device_json(d)::text, d.id FROM devices d"
	" WHERE d.labels @> $1::jsonb"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($2::jsonb) e WHERE d.labels->>(e->>0) IS DISTINCT FROM e->>1)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements($3::jsonb) e WHERE d.labels->>(e->>0) = e->>1)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($4::jsonb) k WHERE NOT d.labels ? k)"
	"  AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text($5::jsonb) k WHERE d.labels ? k)"
	"  AND ($6::text IS NULL OR d.status = $6)"
	"  AND ($7::uuid IS NULL OR d.id > $7::uuid)"
	" ORDER BY d.id LIMIT $8",
	8};
static const db_stmt st_get = {
	"devices_get", "SELECT gn_device_json(d)::text FROM devices d WHERE id = $1", 1};
static const db_stmt st_patch = {
	"devices_patch",
	"UPDATE devices d SET labels = (labels || $2::jsonb) - ARRAY(SELECT jsonb_array_elements_text($3::jsonb)),"
	" name = coalesce($4, name) WHERE id = $1 RETURNING gn_device_json(d)::text",
	4};
static const db_stmt st_decommission = {
	"devices_decommission",
	"WITH d AS (UPDATE devices SET status = 'decommissioned', decommissioned_at = coalesce(decommissioned_at, now())"
	"   WHERE id = $1 RETURNING *),"
	" s AS (DELETE FROM device_sessions WHERE device_id = $1),"
	" c AS (DELETE FROM device_challenges WHERE device_id = $1)"
	" SELECT gn_device_json(d.*)::text FROM d",
	1};

int devices_selector_params(char *out[5], const char *selector, gn_err *err)
{
	gn_selector sel;
	int rc = gn_selector_parse(&sel, selector, err);
	if (rc)
		return rc;
	json_t *eqobj = json_object(), *eq = json_array(), *ne = json_array(), *has = json_array(), *nothas = json_array();
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

void http_devices_list(struct gd_req *r)
{
	char *sp[5] = {0};
	gn_err err;
	const char *status = gd_query(r, "status");
	if (status && strcmp(status, "active") != 0 && strcmp(status, "decommissioned") != 0) {
		gd_reply_problem(r, 400, "status must be active or decommissioned");
		return;
	}
	if (devices_selector_params(sp, gd_query(r, "selector"), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	const char *p[] = {sp[0], sp[1], sp[2], sp[3], sp[4], status};
	gd_list(r, &st_list, CURSOR_UUID, p, 6);
	for (int i = 0; i < 5; i++)
		free(sp[i]);
}

void http_devices_get(struct gd_req *r)
{
	PGresult *res = NULL;
	gn_err err;
	const char *id = gd_param(r, 0);
	if (!gd_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	const char *p[] = {id};
	if (db_exec(&res, gd_db(r), &st_get, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	if (PQntuples(res) == 0)
		gd_reply_problem(r, 404, "no such device");
	else
		gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	PQclear(res);
}

static const gn_json_field patch_fields[] = {
	{"labels", GN_JSON_OBJECT, false, false},
	{"name", GN_JSON_STRING, false, false},
};

void http_devices_patch(struct gd_req *r)
{
	json_t *body = NULL, *set = json_object(), *del = json_array();
	PGresult *res = NULL;
	char *s_set = NULL, *s_del = NULL;
	gn_err err;
	const char *id = gd_param(r, 0);
	if (!gd_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		goto out;
	}
	if (gd_body_json(&body, r, patch_fields, GN_ARRAY_LEN(patch_fields)))
		goto out;
	const char *name = gn_json_str(body, "name");
	if (name && (strlen(name) < 1 || strlen(name) > 128)) {
		gd_reply_problem(r, 400, "name must be 1 to 128 characters");
		goto out;
	}
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(body, "labels"), k, v)
	{
		if (gn_label_key_check(k, &err)) {
			gd_reply_problem(r, 400, err.msg);
			goto out;
		}
		if (json_is_null(v)) {
			json_array_append_new(del, json_string(k));
		} else if (!json_is_string(v)) {
			gd_reply_problem(r, 400, "label values must be strings, or null to remove the label");
			goto out;
		} else if (gn_label_value_check(json_string_value(v), &err)) {
			gd_reply_problem(r, 400, err.msg);
			goto out;
		} else {
			json_object_set(set, k, v);
		}
	}
	s_set = gn_json_dump(set);
	s_del = gn_json_dump(del);
	const char *p[] = {id, s_set, s_del, name};
	if (audit_change(&res, r, &st_patch, p, "no such device", "device.update", "device", id, json_incref(body)))
		goto out;
	gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
out:
	PQclear(res);
	json_decref(body);
	json_decref(set);
	json_decref(del);
	free(s_set);
	free(s_del);
}

void http_devices_decommission(struct gd_req *r)
{
	PGresult *res = NULL;
	const char *id = gd_param(r, 0);
	if (!gd_is_uuid(id)) {
		gd_reply_problem(r, 404, "no such device");
		return;
	}
	const char *p[] = {id};
	if (audit_change(&res, r, &st_decommission, p, "no such device", "device.decommission", "device", id, NULL))
		return;
	gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	PQclear(res);
}
