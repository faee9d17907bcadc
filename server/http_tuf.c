/* The TUF repositories over HTTP: image metadata files, keys, offline root signing of both
 * repositories, and the director's metadata. Thin handlers over tuf_image.c, tuf_keys.c and
 * director.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "director.h"
#include "http.h"
#include "tuf_image.h"
#include "tuf_keys.h"
#include "tufdeleg.h"

/* Maps "root.json", "3.root.json", "timestamp.json", "7.snapshot.json"... to role and version; a
 * delegated targets role only with its version ("4.ci.json"), as consistent snapshots name it. */
static int parse_file(const char *file, char role[GN_TUF_ROLE_NAME_MAX + 1], int *version)
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
			snprintf(role, GN_TUF_ROLE_NAME_MAX + 1, "%s", roles[i]);
			return 0;
		}
	}
	size_t n = strlen(rest);
	gn_err ignore;
	if (!*version || n < 6 || n - 5 > GN_TUF_ROLE_NAME_MAX || strcmp(rest + n - 5, ".json") != 0)
		return -1;
	snprintf(role, GN_TUF_ROLE_NAME_MAX + 1, "%.*s", (int)(n - 5), rest);
	return gn_tufd_role_name_check(role, &ignore) ? -1 : 0;
}

static void http_tuf_get(struct gd_req *r)
{
	char role[GN_TUF_ROLE_NAME_MAX + 1], *body = NULL;
	int version;
	gn_err err;
	if (parse_file(gd_param(r, 0), role, &version)) {
		gd_reply_problem(
			r, 404,
			"no such metadata file (root.json, N.root.json, timestamp.json, N.snapshot.json, N.targets.json, "
			"N.ROLE.json)");
		return;
	}
	if (tuf_image_get(&body, gd_db(r), role, version, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	/* Versioned files never change; the newest ones do. */
	gd_header(r, "Cache-Control", version ? "public, max-age=31536000, immutable" : "no-cache");
	gd_reply_raw(r, 200, "application/json", body, strlen(body));
	free(body);
}

static void root_draft(struct gd_req *r, const char *repo)
{
	json_t *draft = NULL;
	struct tuf_settings ts;
	gn_err err;
	tuf_sign_settings(&ts, config_get());
	if (tuf_keys_root_draft(&draft, gd_db(r), &ts, repo, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_json(r, 200, draft);
}

static void http_tuf_root_draft(struct gd_req *r)
{
	root_draft(r, "image");
}

static void http_tuf_director_root_draft(struct gd_req *r)
{
	root_draft(r, "director");
}

const gn_json_field http_tuf_root_fields[] = {
	{"signed", GN_JSON_OBJECT, true, false},
	{"signatures", GN_JSON_ARRAY, true, false},
};
const size_t http_tuf_root_nfields = GN_ARRAY_LEN(http_tuf_root_fields);

static void root_import(struct gd_req *r, const char *repo)
{
	json_t *body = NULL;
	struct tuf_settings ts;
	int version;
	gn_err err;
	if (gd_body_json(&body, r, http_tuf_root_fields, http_tuf_root_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	const char *offline = gd_query(r, "offline_targets");
	if (offline && strcmp(offline, "true") != 0 && strcmp(offline, "false") != 0) {
		gd_reply_problem(r, 400, "offline_targets must be true or false");
		json_decref(body);
		return;
	}
	if (tuf_keys_root_import(&version, gd_db(r), &ts, gd_actor(r), repo, body,
				 offline && strcmp(offline, "true") == 0, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_json(r, 201, json_pack("{s:s,s:i}", "role", "root", "version", version));
	json_decref(body);
}

static void http_tuf_root_import(struct gd_req *r)
{
	root_import(r, "image");
}

static void http_tuf_director_root_import(struct gd_req *r)
{
	root_import(r, "director");
}

static void http_tuf_keys_list(struct gd_req *r)
{
	json_t *items = NULL;
	struct tuf_settings ts;
	gn_err err;
	tuf_sign_settings(&ts, config_get());
	if (tuf_keys_list(&items, gd_db(r), &ts, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	gd_reply_json(r, 200, json_pack("{s:o,s:n}", "items", items, "next_cursor"));
}

const gn_json_field http_tuf_rotate_fields[] = {{"role", GN_JSON_STRING, true, false}};
const size_t http_tuf_rotate_nfields = GN_ARRAY_LEN(http_tuf_rotate_fields);

static void http_tuf_keys_rotate(struct gd_req *r)
{
	json_t *body = NULL, *out = NULL;
	struct tuf_settings ts;
	gn_err err;
	if (gd_body_json(&body, r, http_tuf_rotate_fields, http_tuf_rotate_nfields))
		return;
	tuf_sign_settings(&ts, config_get());
	if (tuf_keys_rotate(&out, gd_db(r), &ts, gd_actor(r), gn_json_str(body, "role"), &err))
		gd_reply_error(r, &err);
	else /* 202: pending until a root signed offline lists the new key. */
		gd_reply_json(r, json_is_true(json_object_get(out, "pending")) ? 202 : 200, out);
	json_decref(body);
}

/* The director: a TUF repository per device. Its root chain for everyone who may read; each
 * device's own timestamp, snapshot and targets for that device only (they name its device id and
 * are of no use to another; an API token gets 404). */
static void http_tuf_director_get(struct gd_req *r)
{
	char role[GN_TUF_ROLE_NAME_MAX + 1], *body = NULL;
	int version;
	struct tuf_settings ts;
	gn_err err;
	/* The director delegates nothing: only the top-level roles. */
	if (parse_file(gd_param(r, 0), role, &version) ||
	    (strcmp(role, "root") != 0 && strcmp(role, "targets") != 0 && strcmp(role, "snapshot") != 0 &&
	     strcmp(role, "timestamp") != 0)) {
		gd_reply_problem(r, 404,
				 "no such metadata file (root.json, N.root.json, timestamp.json, snapshot.json, "
				 "N.snapshot.json, targets.json, N.targets.json)");
		return;
	}
	if (strcmp(role, "root") == 0) {
		if (director_root_get(&body, gd_db(r), version, &err)) {
			gd_reply_error(r, &err);
			return;
		}
	} else if (gd_actor(r)->kind != GD_ACTOR_DEVICE) {
		gd_reply_problem(r, 404,
				 "director metadata other than root is per device: fetch it with the device's token");
		return;
	} else {
		tuf_sign_settings(&ts, config_get());
		if (director_metadata_get(&body, gd_db(r), &ts, gd_actor(r)->id, role, version, &err)) {
			gd_reply_error(r, &err);
			return;
		}
	}
	gd_header(r, "Cache-Control", "no-cache");
	gd_reply_raw(r, 200, "application/json", body, strlen(body));
	free(body);
}

const struct gd_route http_tuf_routes[] = {
	{"GET", "/v1/tuf/image/{file}", GD_SCOPE_READ | GD_SCOPE_DEVICE | GD_SCOPE_ANON_TUF, http_tuf_get, NULL},
	{"GET", "/v1/tuf/image/root/draft", GD_SCOPE_ADMIN, http_tuf_root_draft, NULL},
	{"GET", "/v1/tuf/director/{file}", GD_SCOPE_READ | GD_SCOPE_DEVICE, http_tuf_director_get, NULL},
	{"GET", "/v1/tuf/director/root/draft", GD_SCOPE_ADMIN, http_tuf_director_root_draft, NULL},
	{"POST", "/v1/tuf/image/root", GD_SCOPE_ADMIN, http_tuf_root_import, NULL},
	{"POST", "/v1/tuf/director/root", GD_SCOPE_ADMIN, http_tuf_director_root_import, NULL},
	{"GET", "/v1/keys", GD_SCOPE_ADMIN, http_tuf_keys_list, NULL},
	{"POST", "/v1/keys/rotate", GD_SCOPE_ADMIN, http_tuf_keys_rotate, NULL},
};
const size_t http_tuf_nroutes = GN_ARRAY_LEN(http_tuf_routes);
