/* The TUF image repository over HTTP: metadata files, keys, offline root signing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "http.h"
#include "tufrepo.h"

/* Maps "root.json", "3.root.json", "timestamp.json", "7.snapshot.json"... to role and version. */
static int parse_file(const char *file, char role[16], int *version)
{
	static const char *const roles[] = {"root", "targets", "snapshot", "timestamp"};
	char *end;
	*version = 0;
	const char *rest = file;
	if (file[0] >= '1' && file[0] <= '9') {
		long v = strtol(file, &end, 10);
		if (*end != '.' || v <= 0 || v > 1000000000)
			return -1;
		*version = (int)v;
		rest = end + 1;
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(roles); i++) {
		size_t n = strlen(roles[i]);
		if (strncmp(rest, roles[i], n) == 0 && strcmp(rest + n, ".json") == 0) {
			/* TUF fetches timestamp.json without a version prefix only. */
			if (*version && strcmp(roles[i], "timestamp") == 0)
				return -1;
			snprintf(role, 16, "%s", roles[i]);
			return 0;
		}
	}
	return -1;
}

void http_tuf_get(struct gd_req *r)
{
	char role[16], *body = NULL;
	int version;
	gn_err err;
	if (parse_file(gd_param(r, 0), role, &version)) {
		gd_reply_problem(r, 404, "no such metadata file (root.json, N.root.json, timestamp.json, N.snapshot.json, N.targets.json)");
		return;
	}
	if (tufrepo_get(&body, gd_db(r), "image", role, version, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	/* Versioned files never change; the newest ones do. */
	gd_header(r, "Cache-Control", version ? "public, max-age=31536000, immutable" : "no-cache");
	gd_reply_raw(r, 200, "application/json", body, strlen(body));
	free(body);
}

void http_tuf_root_draft(struct gd_req *r)
{
	json_t *draft = NULL;
	gn_err err;
	if (tufrepo_root_draft(&draft, gd_db(r), &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_json(r, 200, draft);
}

static const gn_json_field root_fields[] = {
	{"signed", GN_JSON_OBJECT, true, false},
	{"signatures", GN_JSON_ARRAY, true, false},
};

void http_tuf_root_import(struct gd_req *r)
{
	json_t *body = NULL;
	gn_err err;
	if (gd_body_json(&body, r, root_fields, GN_ARRAY_LEN(root_fields)))
		return;
	if (tufrepo_root_import(gd_db(r), body, &err)) {
		gd_reply_error(r, &err);
		json_decref(body);
		return;
	}
	char ver[24];
	snprintf(ver, sizeof(ver), "%lld", (long long)json_integer_value(json_object_get(json_object_get(body, "signed"), "version")));
	if (audit_write(gd_db(r), &r->actor, "tuf.root_import", "tuf_root", ver, NULL, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, json_pack("{s:s,s:i}", "role", "root", "version", atoi(ver)));
	json_decref(body);
}

void http_tuf_keys_list(struct gd_req *r)
{
	json_t *items = NULL;
	gn_err err;
	if (tufrepo_keys_list(&items, gd_db(r), &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_json(r, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

static const gn_json_field rotate_fields[] = {{"role", GN_JSON_STRING, true, false}};

void http_tuf_keys_rotate(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, rotate_fields, 1))
		return;
	const char *role = gn_json_str(body, "role");
	if (strcmp(role, "targets") != 0 && strcmp(role, "snapshot") != 0 && strcmp(role, "timestamp") != 0) {
		gd_reply_problem(r, 400, "role must be targets, snapshot or timestamp (root keys change through an offline-signed root)");
		json_decref(body);
		return;
	}
	if (tufrepo_rotate(&out, gd_db(r), role, &err) ||
	    audit_write(gd_db(r), &r->actor, "tuf.key_rotate", "tuf_key", json_string_value(json_object_get(out, "keyid")),
			json_pack("{s:s}", "role", role), &err)) {
		gd_reply_error(r, &err);
		json_decref(out);
		json_decref(body);
		return;
	}
	/* 202: pending until a root signed offline lists the new key. */
	gd_reply_json(r, json_is_true(json_object_get(out, "pending")) ? 202 : 200, out);
	json_decref(body);
}

/* The director's metadata: its root chain for everyone who may read, and each device's own
 * targets for that device (they name its device id and are of no use to another). */
void http_tuf_director_get(struct gd_req *r)
{
	const char *file = gd_param(r, 0);
	char *body = NULL;
	int version = 0;
	gn_err err;
	if (strcmp(file, "targets.json") == 0) {
		if (r->actor.kind != GD_ACTOR_DEVICE) {
			gd_reply_problem(r, 404, "director targets are per device: fetch them with the device's token");
			return;
		}
		if (tufrepo_director_current(&body, &version, NULL, gd_db(r), r->actor.id, &err)) {
			gd_reply_error(r, &err);
			return;
		}
	} else {
		char *end;
		const char *rest = file;
		if (file[0] >= '1' && file[0] <= '9') {
			long v = strtol(file, &end, 10);
			if (*end != '.' || v <= 0 || v > 1000000000) {
				gd_reply_problem(r, 404, "no such metadata file (root.json, N.root.json, targets.json)");
				return;
			}
			version = (int)v;
			rest = end + 1;
		}
		if (strcmp(rest, "root.json") != 0) {
			gd_reply_problem(r, 404, "no such metadata file (root.json, N.root.json, targets.json)");
			return;
		}
		if (tufrepo_get(&body, gd_db(r), "director", "root", version, &err)) {
			gd_reply_error(r, &err);
			return;
		}
	}
	gd_header(r, "Cache-Control", "no-cache");
	gd_reply_raw(r, 200, "application/json", body, strlen(body));
	free(body);
}
