/* Offline top-level targets and delegated roles signed by CI, in the image repository. */
#include "tuf_deleg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "log.h"
#include "tuf.h"
#include "tuf_image.h"
#include "tufdeleg.h"

static const db_stmt st_offline = {
	"tuf_deleg_offline",
	"SELECT NOT EXISTS (SELECT 1 FROM tuf_keys WHERE repo = 'image' AND role = 'targets' AND active"
	" AND private_pem IS NOT NULL)",
	0};
static const db_stmt st_entry = {
	"tuf_deleg_entry",
	"SELECT 'models/' || model || '/' || version || '/' || filename,"
	" jsonb_build_object('length', length, 'hashes', jsonb_build_object('sha256', sha256), 'custom', custom)::text"
	" FROM model_versions WHERE model = $1 AND version = $2",
	2};

int tuf_deleg_offline(bool *out, db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, &st_offline, NULL, err);
	if (!error)
		*out = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return error;
}

/* GN_EINVAL unless the targets key is offline. */
static int need_offline(db_conn *c, gn_err *err)
{
	bool offline = false;
	int error = tuf_deleg_offline(&offline, c, err);
	if (!error && !offline)
		error = gn_err_set(err, GN_EINVAL,
				   "the image targets key is held by this server (server-held mode): there is no "
				   "offline targets role or delegation to sign; see 'ganglion keys delegate'");
	return error;
}

/* Checks the common shape of targets metadata: _type, version (want), spec_version, expiry in the
 * future (*out_expires), a "targets" object. GN_ECONFLICT for another version. */
static int check_targets_shape(int64_t *out_expires, const json_t *sp, const char *role, int want, gn_err *err)
{
	const char *type = json_string_value(json_object_get(sp, "_type"));
	const char *spec = json_string_value(json_object_get(sp, "spec_version"));
	if (!json_is_object(sp) || !type || strcmp(type, "targets") != 0)
		return gn_err_set(err, GN_EINVAL, "%s metadata must be signed targets metadata", role);
	if (!spec || strncmp(spec, "1.", 2) != 0)
		return gn_err_set(err, GN_EINVAL, "%s spec_version must be 1.x (TUF 1.0)", role);
	if (!json_is_integer(json_object_get(sp, "version")) ||
	    json_integer_value(json_object_get(sp, "version")) != want)
		return gn_err_set(err, GN_ECONFLICT,
				  "%s version must be %d (the current one is %d): another version was published "
				  "first; sign a new draft",
				  role, want, want - 1);
	if (gn_tuf_time_parse(out_expires, json_string_value(json_object_get(sp, "expires"))) ||
	    *out_expires <= gn_now())
		return gn_err_set(err, GN_EINVAL, "%s 'expires' is missing, malformed or in the past", role);
	if (!json_is_object(json_object_get(sp, "targets")))
		return gn_err_set(err, GN_EINVAL, "%s metadata has no 'targets' object", role);
	return gn_tufd_delegations_check(sp, err);
}

/* Stores env as image/role at version and publishes a snapshot and timestamp over it. */
static int store_and_publish(db_conn *c, const struct tuf_settings *s, const char *role, int version, const json_t *env,
			     int64_t expires, gn_err *err)
{
	char *body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	int error = tuf_sign_put(c, "image", role, version, body, expires, err);
	free(body);
	if (!error)
		error = tuf_image_publish_snapshot(c, s, err);
	if (!error)
		gn_log(GN_LOG_INFO, "event=tuf_stored repo=image role=%s version=%d signed_by=offline", role, version);
	return error;
}

int tuf_deleg_targets_import(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			     const json_t *env, gn_err *err)
{
	struct tuf_latest root, tg;
	int64_t exp;
	int error;
	memset(&root, 0, sizeof(root));
	memset(&tg, 0, sizeof(tg));
	const json_t *sp = json_object_get(env, "signed");
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = need_offline(c, err)) ||
	    (error = tuf_sign_latest(&root, c, "image", "root", err)) ||
	    (error = tuf_sign_latest(&tg, c, "image", "targets", err)) ||
	    (error = check_targets_shape(&exp, sp, "targets", tg.version + 1, err)))
		goto out;
	if ((error = gn_tuf_verify_role(env, json_object_get(root.env, "signed"), "targets", err)))
		goto refused;
	if ((error = store_and_publish(c, s, "targets", tg.version + 1, env, exp, err)) ||
	    (error = audit_write(c, who, "tuf.targets_import", "tuf_role", "targets",
				 json_pack("{s:i}", "version", tg.version + 1), err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	*out_version = tg.version + 1;
	goto out;
refused:
	/* A signature short of the threshold is bad input here, not a failed login. */
	error = GN_EINVAL;
	if (err)
		err->code = error;
out:
	if (error)
		db_tx_rollback(c);
	tuf_sign_latest_cleanup(&root);
	tuf_sign_latest_cleanup(&tg);
	return error;
}

/* The entry of the top-level targets' "delegations.roles" named name, or the first whose paths
 * cover path (name NULL); NULL when none. Borrowed from targets. */
static const json_t *find_delegation(const json_t *targets, const char *name, const char *path)
{
	size_t i;
	json_t *role;
	const json_t *roles =
		json_object_get(json_object_get(json_object_get(targets, "signed"), "delegations"), "roles");
	json_array_foreach(roles, i, role) {
		const char *n = json_string_value(json_object_get(role, "name"));
		if (name ? (n && strcmp(n, name) == 0) : gn_tufd_role_matches(role, path))
			return role;
	}
	return NULL;
}

/* Reads model@version's target path and entry into *out_path, *out_entry (new). */
static int version_entry(char **out_path, json_t **out_entry, db_conn *c, const char *model, const char *version,
			 gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {model, version};
	int error = db_exec(&res, c, &st_entry, p, err);
	if (!error && PQntuples(res) != 1)
		error = gn_err_set(err, GN_ENOTFOUND, "no model version %s@%s", model, version);
	if (!error) {
		json_t *entry = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
		if (!json_is_object(entry)) {
			json_decref(entry);
			error = gn_err_set(err, GN_ERROR, "the stored target entry of %s@%s does not parse", model,
					   version);
		} else {
			*out_path = gn_strdup(PQgetvalue(res, 0, 0));
			*out_entry = entry;
		}
	}
	PQclear(res);
	return error;
}

int tuf_deleg_release_draft(json_t **out, db_conn *c, const struct tuf_settings *s, const char *model,
			    const char *version, gn_err *err)
{
	struct tuf_latest tg, cur;
	char *path = NULL;
	json_t *entry = NULL;
	int error;
	memset(&tg, 0, sizeof(tg));
	memset(&cur, 0, sizeof(cur));
	if ((error = need_offline(c, err)) || (error = version_entry(&path, &entry, c, model, version, err)) ||
	    (error = tuf_sign_latest(&tg, c, "image", "targets", err)))
		goto out;
	const json_t *role = find_delegation(tg.env, NULL, path);
	const char *name = json_string_value(json_object_get(role, "name"));
	if (!role || !name) {
		error = gn_err_set(err, GN_EINVAL, "no delegation of the top-level targets covers %s", path);
		goto out;
	}
	if ((error = tuf_sign_latest(&cur, c, "image", name, err)))
		goto out;
	const json_t *cur_signed = json_object_get(cur.env, "signed");
	json_t *sp = tuf_sign_header("targets", cur.version + 1, gn_now() + tuf_sign_lifetime(s, "targets"));
	json_t *targets = cur_signed ? json_deep_copy(json_object_get(cur_signed, "targets")) : json_object();
	json_object_set(targets, path, entry);
	json_object_set_new(sp, "targets", targets);
	*out = json_pack("{s:s,s:s,s:O,s:O,s:O?,s:o}", "role", name, "path", path, "keyids",
			 json_object_get(role, "keyids"), "threshold", json_object_get(role, "threshold"), "current",
			 cur.env, "signed", sp);
out:
	free(path);
	json_decref(entry);
	tuf_sign_latest_cleanup(&tg);
	tuf_sign_latest_cleanup(&cur);
	return error;
}

/* Checks that every target env's signed part lists is within the delegation's paths. */
static int within_paths(const json_t *delegation, const json_t *sp, const char *name, gn_err *err)
{
	const char *path;
	json_t *t;
	json_object_foreach(json_object_get(sp, "targets"), path, t) {
		if (!gn_tufd_role_matches(delegation, path))
			return gn_err_set(err, GN_EINVAL, "role %s lists %s, outside the paths delegated to it", name,
					  path);
	}
	return 0;
}

int tuf_deleg_role_publish(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			   const char *role, const json_t *env, gn_err *err)
{
	struct tuf_latest tg, cur;
	int64_t exp;
	int error;
	memset(&tg, 0, sizeof(tg));
	memset(&cur, 0, sizeof(cur));
	const json_t *sp = json_object_get(env, "signed");
	if ((error = gn_tufd_role_name_check(role, err)) || (error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = need_offline(c, err)) ||
	    (error = tuf_sign_latest(&tg, c, "image", "targets", err)))
		goto out;
	const json_t *delegation = find_delegation(tg.env, role, NULL);
	if (!delegation) {
		error = gn_err_set(err, GN_ENOTFOUND, "the top-level targets delegate to no role '%s'", role);
		goto out;
	}
	if ((error = tuf_sign_latest(&cur, c, "image", role, err)) ||
	    (error = check_targets_shape(&exp, sp, role, cur.version + 1, err)) ||
	    (error = within_paths(delegation, sp, role, err)))
		goto out;
	json_t *by =
		json_pack("{s:O,s:{s:O}}", "keys",
			  json_object_get(json_object_get(json_object_get(tg.env, "signed"), "delegations"), "keys"),
			  "roles", role, delegation);
	error = gn_tuf_verify_role(env, by, role, err);
	json_decref(by);
	if (error) {
		error = GN_EINVAL; /* short of the threshold: bad input, not a failed login */
		if (err)
			err->code = error;
		goto out;
	}
	if ((error = store_and_publish(c, s, role, cur.version + 1, env, exp, err)) ||
	    (error = audit_write(c, who, "tuf.role_publish", "tuf_role", role,
				 json_pack("{s:i,s:i}", "version", cur.version + 1, "targets",
					   (int)json_object_size(json_object_get(sp, "targets"))),
				 err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	*out_version = cur.version + 1;
out:
	if (error)
		db_tx_rollback(c);
	tuf_sign_latest_cleanup(&tg);
	tuf_sign_latest_cleanup(&cur);
	return error;
}
