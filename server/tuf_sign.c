/* Signing and storing TUF metadata for the image repository, the keys and the director. */
#include "tuf_sign.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "tuf.h"

static const db_stmt st_latest = {
	"tuf_latest",
	"SELECT version, body, extract(epoch FROM expires_at)::bigint, extract(epoch FROM created_at)::bigint"
	" FROM tuf_metadata WHERE repo = $1 AND role = $2 ORDER BY version DESC LIMIT 1",
	2};
static const db_stmt st_get = {"tuf_get",
			       "SELECT body FROM tuf_metadata WHERE repo = $1 AND role = $2 AND version = $3", 3};
static const db_stmt st_store = {"tuf_store",
				 "INSERT INTO tuf_metadata (repo, role, version, body, expires_at)"
				 " VALUES ($1, $2, $3, $4, to_timestamp($5::bigint))",
				 5};
static const db_stmt st_online_key = {
	"tuf_online_key",
	"SELECT private_pem FROM tuf_keys WHERE repo = $1 AND role = $2 AND active AND private_pem IS NOT NULL"
	" ORDER BY created_at DESC LIMIT 1",
	2};

void tuf_sign_settings(struct tuf_settings *out, const struct gd_config *cfg)
{
	*out = (struct tuf_settings){
		.data_dir = cfg->data_dir,
		.root_keys = (int)cfg->tuf_root_keys,
		.root_threshold = (int)cfg->tuf_root_threshold,
		.root_expiry = cfg->tuf_root_expiry,
		.targets_expiry = cfg->tuf_targets_expiry,
		.snapshot_expiry = cfg->tuf_snapshot_expiry,
		.timestamp_expiry = cfg->tuf_timestamp_expiry,
		.director_expiry = cfg->tuf_director_expiry,
	};
}

int64_t tuf_sign_lifetime(const struct tuf_settings *s, const char *role)
{
	if (strcmp(role, "root") == 0)
		return s->root_expiry;
	if (strcmp(role, "targets") == 0)
		return s->targets_expiry;
	if (strcmp(role, "snapshot") == 0)
		return s->snapshot_expiry;
	return s->timestamp_expiry;
}

bool tuf_sign_due(int64_t created, int64_t expires, int64_t now)
{
	return expires - now < (expires - created) / 2;
}

void tuf_sign_latest_cleanup(struct tuf_latest *l)
{
	json_decref(l->env);
	free(l->body);
	memset(l, 0, sizeof(*l));
}

int tuf_sign_latest(struct tuf_latest *out, db_conn *c, const char *repo, const char *role, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {repo, role};
	memset(out, 0, sizeof(*out));
	int error = db_exec(&res, c, &st_latest, p, err);
	if (error || PQntuples(res) != 1)
		goto out;
	out->version = atoi(PQgetvalue(res, 0, 0));
	out->body = gn_strdup(PQgetvalue(res, 0, 1));
	out->expires = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	out->created = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	out->env = json_loads(out->body, 0, NULL);
	if (!out->env)
		error = gn_err_set(err, GN_ERROR, "stored %s metadata version %d is not JSON", role, out->version);
out:
	PQclear(res);
	return error;
}

json_int_t tuf_sign_root_threshold(const struct tuf_latest *l)
{
	const json_t *roles = json_object_get(json_object_get(l->env, "signed"), "roles");
	return json_integer_value(json_object_get(json_object_get(roles, "root"), "threshold"));
}

int tuf_sign_get(char **out, db_conn *c, const char *repo, const char *role, int version, gn_err *err)
{
	PGresult *res = NULL;
	char ver[16];
	int error;
	if (version == 0) {
		struct tuf_latest l;
		if (!(error = tuf_sign_latest(&l, c, repo, role, err)) && !l.version)
			error = gn_err_set(err, GN_ENOTFOUND, "no %s metadata yet", role);
		if (!error) {
			*out = l.body;
			l.body = NULL;
		}
		tuf_sign_latest_cleanup(&l);
		return error;
	}
	snprintf(ver, sizeof(ver), "%d", version);
	const char *p[] = {repo, role, ver};
	if ((error = db_exec(&res, c, &st_get, p, err)))
		return error;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no %s metadata version %d", role, version);
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

json_t *tuf_sign_header(const char *type, int version, int64_t expires)
{
	char t[21];
	gn_tuf_time(t, expires);
	return json_pack("{s:s,s:s,s:i,s:s}", "_type", type, "spec_version", GN_TUF_SPEC_VERSION, "version", version,
			 "expires", t);
}

int tuf_sign_put(db_conn *c, const char *repo, const char *role, int version, const char *body, int64_t expires,
		 gn_err *err)
{
	char ver[16], exp[32];
	snprintf(ver, sizeof(ver), "%d", version);
	snprintf(exp, sizeof(exp), "%lld", (long long)expires);
	const char *p[] = {repo, role, ver, body, exp};
	return db_exec(NULL, c, &st_store, p, err);
}

int tuf_sign_store(char **out_body, db_conn *c, const char *repo, const char *role, int version,
		   const json_t *signed_part, gn_ed25519_key *const *keys, size_t nkeys, int64_t expires, gn_err *err)
{
	json_t *env = NULL;
	int error = gn_tuf_sign(&env, signed_part, keys, nkeys, err);
	if (error)
		return error;
	char *body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(env);
	error = tuf_sign_put(c, repo, role, version, body, expires, err);
	if (!error)
		gn_log(GN_LOG_INFO, "event=tuf_signed repo=%s role=%s version=%d", repo, role, version);
	if (!error && out_body)
		*out_body = body;
	else
		free(body);
	return error;
}

int tuf_sign_online_key(gn_ed25519_key **out, db_conn *c, const char *repo, const char *role, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {repo, role};
	int error = db_exec(&res, c, &st_online_key, p, err);
	if (error)
		return error;
	if (PQntuples(res) != 1)
		error = gn_err_set(err, GN_ERROR, "no online %s %s key", repo, role);
	else
		error = gn_ed25519_from_pem(out, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err);
	PQclear(res);
	return error;
}

int tuf_sign_online(char **out_body, db_conn *c, const char *repo, const char *role, int version,
		    const json_t *signed_part, int64_t expires, gn_err *err)
{
	gn_ed25519_key *key = NULL;
	int error = tuf_sign_online_key(&key, c, repo, role, err);
	if (!error)
		error = tuf_sign_store(out_body, c, repo, role, version, signed_part, &key, 1, expires, err);
	gn_ed25519_key_free(key);
	return error;
}
