/* The TUF image repository: generates keys, builds and signs metadata, keeps it fresh. */
#include "tufrepo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gangliond.h"
#include "json.h"
#include "log.h"
#include "tuf.h"

#define TUF_LOCK_SQL "SELECT pg_advisory_xact_lock(1734438505)"

static const char *const online_roles[] = {"targets", "snapshot", "timestamp"};

static const db_stmt st_latest = {
	"tuf_latest",
	"SELECT version, body, extract(epoch FROM expires_at)::bigint, extract(epoch FROM created_at)::bigint"
	" FROM tuf_metadata WHERE repo = $1 AND role = $2 ORDER BY version DESC LIMIT 1",
	2};
static const db_stmt st_get = {
	"tuf_get", "SELECT body FROM tuf_metadata WHERE repo = $1 AND role = $2 AND version = $3", 3};
static const db_stmt st_store = {
	"tuf_store",
	"INSERT INTO tuf_metadata (repo, role, version, body, expires_at)"
	" VALUES ($1, $2, $3, $4, to_timestamp($5::bigint))",
	5};
static const db_stmt st_online_key = {
	"tuf_online_key",
	"SELECT private_pem FROM tuf_keys WHERE repo = $1 AND role = $2 AND active AND private_pem IS NOT NULL"
	" ORDER BY created_at DESC LIMIT 1",
	2};
static const db_stmt st_keys_active = {
	"tuf_keys_active",
	"SELECT keyid, role, public FROM tuf_keys WHERE repo = $1 AND active ORDER BY role, created_at, keyid", 1};
/* The keys a draft root lists: a role's pending key replaces its active ones. */
static const db_stmt st_keys_draft = {
	"tuf_keys_draft",
	"SELECT keyid, role, public FROM tuf_keys k WHERE repo = $1 AND (pending OR (active AND NOT EXISTS"
	" (SELECT 1 FROM tuf_keys p WHERE p.repo = $1 AND p.role = k.role AND p.pending)))"
	" ORDER BY role, created_at, keyid",
	1};
static const db_stmt st_key_pending = {
	"tuf_key_pending",
	"WITH x AS (DELETE FROM tuf_keys WHERE repo = $1 AND role = $2 AND pending AND keyid <> $3)"
	" UPDATE tuf_keys SET active = false, pending = true WHERE keyid = $3",
	3};
static const db_stmt st_key_activate_pending = {
	"tuf_key_activate_pending",
	"WITH p AS (UPDATE tuf_keys SET active = true, pending = false WHERE repo = $1 AND role = $2 AND pending"
	"   RETURNING keyid)"
	" UPDATE tuf_keys SET active = false WHERE repo = $1 AND role = $2 AND active"
	"   AND keyid NOT IN (SELECT keyid FROM p) AND EXISTS (SELECT 1 FROM p)",
	2};
static const db_stmt st_key_insert = {
	"tuf_key_insert",
	"INSERT INTO tuf_keys (keyid, repo, role, public, private_pem) VALUES ($1, $2, $3, $4, $5)"
	" ON CONFLICT (keyid) DO UPDATE SET active = true",
	5};
static const db_stmt st_key_retire_others = {
	"tuf_key_retire_others",
	"UPDATE tuf_keys SET active = false WHERE repo = $1 AND role = $2 AND active AND keyid <> ALL($3::text[])", 3};
static const db_stmt st_targets = {
	"tuf_targets",
	"SELECT coalesce(jsonb_object_agg('models/' || model || '/' || version || '/' || filename,"
	" jsonb_build_object('length', length, 'hashes', jsonb_build_object('sha256', sha256), 'custom', custom)),"
	" '{}')::text FROM model_versions",
	0};
static const db_stmt st_keys_list = {
	"tufrepo_keys_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('keyid', keyid, 'repo', repo, 'role', role, 'public', public,"
	" 'online', private_pem IS NOT NULL, 'active', active, 'created_at', gn_ts(created_at))"
	" ORDER BY repo DESC, role, created_at), '[]')::text FROM tuf_keys WHERE active",
	0};

static int64_t lifetime(const char *role)
{
	if (strcmp(role, "root") == 0)
		return gd.cfg.tuf_root_expiry;
	if (strcmp(role, "targets") == 0)
		return gd.cfg.tuf_targets_expiry;
	if (strcmp(role, "snapshot") == 0)
		return gd.cfg.tuf_snapshot_expiry;
	return gd.cfg.tuf_timestamp_expiry;
}

struct latest {
	int version; /* 0 when none */
	json_t *env;
	char *body;
	int64_t expires;
	int64_t created;
};

static void latest_cleanup(struct latest *l)
{
	json_decref(l->env);
	free(l->body);
	memset(l, 0, sizeof(*l));
}

static int get_latest(struct latest *out, db_conn *c, const char *repo, const char *role, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {repo, role};
	memset(out, 0, sizeof(*out));
	int rc = db_exec(&res, c, &st_latest, p, err);
	if (rc)
		return rc;
	if (PQntuples(res) == 1) {
		out->version = atoi(PQgetvalue(res, 0, 0));
		out->body = gn_strdup(PQgetvalue(res, 0, 1));
		out->expires = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		out->created = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		out->env = json_loads(out->body, 0, NULL);
		if (!out->env)
			rc = gn_err_set(err, GN_ERROR, "stored %s metadata version %d is not JSON", role, out->version);
	}
	PQclear(res);
	return rc;
}

/* Signs `signed_part` with keys and stores it as role/version; *out_body (optional) gets the bytes. */
static int store(char **out_body, db_conn *c, const char *repo, const char *role, int version, json_t *signed_part,
		 gn_ed25519_key *const *keys, size_t nkeys, int64_t expires, gn_err *err)
{
	json_t *env = NULL;
	char ver[16], exp[32];
	int rc = gn_tuf_sign(&env, signed_part, keys, nkeys, err);
	if (rc)
		return rc;
	char *body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(env);
	snprintf(ver, sizeof(ver), "%d", version);
	snprintf(exp, sizeof(exp), "%lld", (long long)expires);
	const char *p[] = {repo, role, ver, body, exp};
	rc = db_exec(NULL, c, &st_store, p, err);
	if (!rc)
		gn_log(GN_LOG_INFO, "event=tuf_signed repo=%s role=%s version=%d", repo, role, version);
	if (!rc && out_body)
		*out_body = body;
	else
		free(body);
	return rc;
}

static json_t *header(const char *type, int version, int64_t expires)
{
	char t[21];
	gn_tuf_time(t, expires);
	return json_pack("{s:s,s:s,s:i,s:s}", "_type", type, "spec_version", GN_TUF_SPEC_VERSION, "version", version,
			 "expires", t);
}

static int online_key(gn_ed25519_key **out, db_conn *c, const char *repo, const char *role, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {repo, role};
	int rc = db_exec(&res, c, &st_online_key, p, err);
	if (rc)
		return rc;
	if (PQntuples(res) != 1)
		rc = gn_err_set(err, GN_ERROR, "no online %s %s key", repo, role);
	else
		rc = gn_ed25519_from_pem(out, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), err);
	PQclear(res);
	return rc;
}

static int sign_online(char **out_body, db_conn *c, const char *repo, const char *role, int version, json_t *signed_part,
		       int64_t expires, gn_err *err)
{
	gn_ed25519_key *key = NULL;
	int rc = online_key(&key, c, repo, role, err);
	if (!rc)
		rc = store(out_body, c, repo, role, version, signed_part, &key, 1, expires, err);
	gn_ed25519_key_free(key);
	return rc;
}

static int publish_timestamp(db_conn *c, int snapshot_version, const char *snapshot_body, gn_err *err)
{
	struct latest ts;
	char sum[GN_SHA256_HEX_LEN + 1];
	int rc = get_latest(&ts, c, "image", "timestamp", err);
	if (rc)
		return rc;
	int64_t exp = gn_now() + lifetime("timestamp");
	json_t *s = header("timestamp", ts.version + 1, exp);
	gn_sha256_hex(sum, snapshot_body, strlen(snapshot_body));
	json_object_set_new(s, "meta",
			    json_pack("{s:{s:i,s:I,s:{s:s}}}", "snapshot.json", "version", snapshot_version, "length",
				      (json_int_t)strlen(snapshot_body), "hashes", "sha256", sum));
	rc = sign_online(NULL, c, "image", "timestamp", ts.version + 1, s, exp, err);
	json_decref(s);
	latest_cleanup(&ts);
	return rc;
}

static int publish_snapshot(db_conn *c, int targets_version, gn_err *err)
{
	struct latest sn;
	char *body = NULL;
	int rc = get_latest(&sn, c, "image", "snapshot", err);
	if (rc)
		return rc;
	int64_t exp = gn_now() + lifetime("snapshot");
	json_t *s = header("snapshot", sn.version + 1, exp);
	json_object_set_new(s, "meta", json_pack("{s:{s:i}}", "targets.json", "version", targets_version));
	rc = sign_online(&body, c, "image", "snapshot", sn.version + 1, s, exp, err);
	if (!rc)
		rc = publish_timestamp(c, sn.version + 1, body, err);
	json_decref(s);
	free(body);
	latest_cleanup(&sn);
	return rc;
}

static int publish_targets_locked(db_conn *c, gn_err *err)
{
	struct latest tg;
	PGresult *res = NULL;
	json_t *s = NULL;
	int rc = get_latest(&tg, c, "image", "targets", err);
	if (rc)
		return rc;
	if ((rc = db_exec(&res, c, &st_targets, NULL, err)))
		goto out;
	json_t *targets = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	if (!targets) {
		rc = gn_err_set(err, GN_ERROR, "cannot build targets");
		goto out;
	}
	int64_t exp = gn_now() + lifetime("targets");
	s = header("targets", tg.version + 1, exp);
	json_object_set_new(s, "targets", targets);
	if ((rc = sign_online(NULL, c, "image", "targets", tg.version + 1, s, exp, err)))
		goto out;
	rc = publish_snapshot(c, tg.version + 1, err);
out:
	json_decref(s);
	PQclear(res);
	latest_cleanup(&tg);
	return rc;
}

int tufrepo_publish_targets(db_conn *c, gn_err *err)
{
	int rc = db_exec_sql(c, TUF_LOCK_SQL, err);
	return rc ? rc : publish_targets_locked(c, err);
}

/* Builds the signed part of a root from the active keys in the database. */
static int build_root_from(json_t **out, db_conn *c, const db_stmt *keys_st, const char *repo, int version,
			   json_int_t root_threshold, gn_err *err)
{
	PGresult *res = NULL;
	const char *pk[] = {repo};
	int rc = db_exec(&res, c, keys_st, pk, err);
	if (rc)
		return rc;
	json_t *keys = json_object(), *roles = json_object();
	static const char *const all[] = {"root", "targets", "snapshot", "timestamp"};
	/* The director signs only root and per-device targets. */
	size_t nroles = strcmp(repo, "director") == 0 ? 2 : GN_ARRAY_LEN(all);
	for (size_t i = 0; i < nroles; i++)
		json_object_set_new(roles, all[i],
				    json_pack("{s:[],s:I}", "keyids", "threshold",
					      strcmp(all[i], "root") == 0 ? root_threshold : (json_int_t)1));
	for (int i = 0; i < PQntuples(res); i++) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		if (gn_hex_decode(pub, sizeof(pub), PQgetvalue(res, i, 2)))
			continue;
		json_object_set_new(keys, PQgetvalue(res, i, 0), gn_tuf_key_json(pub));
		json_array_append_new(json_object_get(json_object_get(roles, PQgetvalue(res, i, 1)), "keyids"),
				      json_string(PQgetvalue(res, i, 0)));
	}
	PQclear(res);
	int64_t exp = gn_now() + lifetime("root");
	json_t *s = header("root", version, exp);
	json_object_set_new(s, "consistent_snapshot", json_true());
	json_object_set_new(s, "keys", keys);
	json_object_set_new(s, "roles", roles);
	*out = s;
	return 0;
}

static size_t load_root_keys(gn_ed25519_key ***out, const char *repo, const json_t *keyids);
static void free_keys(gn_ed25519_key **keys, size_t n);

/* Builds the signed part of a root from the active keys. */
static int build_root(json_t **out, db_conn *c, const char *repo, int version, json_int_t root_threshold, gn_err *err)
{
	return build_root_from(out, c, &st_keys_active, repo, version, root_threshold, err);
}

/* The number of root keys whose private half is in DATA_DIR/keys. */
static size_t root_keys_here(const char *repo, const struct latest *root)
{
	gn_ed25519_key **keys = NULL;
	size_t n = load_root_keys(&keys, repo,
				  json_object_get(json_object_get(json_object_get(json_object_get(root->env, "signed"), "roles"),
								  "root"),
						  "keyids"));
	free_keys(keys, n);
	return n;
}

static char *root_key_path(const char *repo, const char *keyid)
{
	return gn_asprintf("%s/keys/%sroot-%s.pem", gd.cfg.data_dir, strcmp(repo, "image") == 0 ? "" : "director-", keyid);
}

/* Loads the root private keys this server holds for the keyids listed (new array of keys). */
static size_t load_root_keys(gn_ed25519_key ***out, const char *repo, const json_t *keyids)
{
	size_t n = 0, i;
	json_t *k;
	gn_ed25519_key **keys = gn_calloc(json_array_size(keyids) + 1, sizeof(*keys));
	json_array_foreach(keyids, i, k)
	{
		gn_err ignore;
		char *path = root_key_path(repo, json_string_value(k));
		if (gn_ed25519_load(&keys[n], path, &ignore) == 0)
			n++;
		free(path);
	}
	*out = keys;
	return n;
}

static void free_keys(gn_ed25519_key **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gn_ed25519_key_free(keys[i]);
	free(keys);
}

/* Publishes a new root from the database's active keys, signed with the root keys on disk; they
 * must meet the thresholds of the current root and of the new one. */
static int publish_root(db_conn *c, const char *repo, const struct latest *cur, gn_err *err)
{
	json_t *s = NULL;
	gn_ed25519_key **keys = NULL;
	const json_t *cur_signed = json_object_get(cur->env, "signed");
	const json_t *cur_root = json_object_get(json_object_get(cur_signed, "roles"), "root");
	json_int_t threshold = json_integer_value(json_object_get(cur_root, "threshold"));
	int rc = build_root(&s, c, repo, cur->version + 1, threshold, err);
	if (rc)
		return rc;
	size_t n = load_root_keys(&keys, repo, json_object_get(cur_root, "keyids"));
	if ((json_int_t)n < threshold) {
		rc = gn_err_set(err, GN_ECONFLICT,
				"this server holds %zu of the %lld root keys needed to sign a new root; export the "
				"draft (GET /v1/tuf/image/root/draft), sign it offline with `ganglion keys sign-root` "
				"and import it",
				n, (long long)threshold);
		goto out;
	}
	rc = store(NULL, c, repo, "root", cur->version + 1, s, keys, n, gn_now() + lifetime("root"), err);
out:
	free_keys(keys, n);
	json_decref(s);
	return rc;
}

static int insert_key(db_conn *c, const char *repo, const char *role, gn_ed25519_key *key, bool keep_private, char keyid[65], gn_err *err)
{
	unsigned char pub[GN_ED25519_PUB_LEN];
	char hex[2 * GN_ED25519_PUB_LEN + 1];
	gn_ed25519_public(pub, key);
	gn_hex_encode(hex, pub, sizeof(pub));
	json_t *kj = gn_tuf_key_json(pub);
	int rc = gn_tuf_keyid(keyid, kj, err);
	json_decref(kj);
	if (rc)
		return rc;
	char *pem = keep_private ? gn_ed25519_to_pem(key) : NULL;
	const char *p[] = {keyid, repo, role, hex, pem};
	rc = db_exec(NULL, c, &st_key_insert, p, err);
	free(pem);
	return rc;
}

/* Creates a repository's keys and first root (inside the caller's locked transaction). */
static int init_repo(db_conn *c, const char *repo, gn_err *err)
{
	struct latest root;
	gn_ed25519_key **keys = NULL;
	json_t *s = NULL;
	size_t nkeys = 0;
	char *dir = NULL;
	int rc;
	bool image = strcmp(repo, "image") == 0;
	if ((rc = get_latest(&root, c, repo, "root", err)))
		return rc;
	if (root.version > 0)
		goto out;
	dir = gn_asprintf("%s/keys", gd.cfg.data_dir);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = gn_err_set(err, GN_ERROR, "cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	nkeys = (size_t)gd.cfg.tuf_root_keys;
	keys = gn_calloc(nkeys, sizeof(*keys));
	for (size_t i = 0; i < nkeys; i++) {
		char keyid[65];
		if ((rc = gn_ed25519_generate(&keys[i], err)) ||
		    (rc = insert_key(c, repo, "root", keys[i], false, keyid, err)))
			goto out;
		char *path = root_key_path(repo, keyid);
		rc = gn_ed25519_save(keys[i], path, err);
		if (!rc)
			gn_log(GN_LOG_INFO, "event=tuf_root_key_created repo=%s keyid=%s file=%s", repo, keyid, path);
		free(path);
		if (rc)
			goto out;
	}
	for (size_t i = 0; i < (image ? GN_ARRAY_LEN(online_roles) : 1); i++) {
		gn_ed25519_key *k = NULL;
		char keyid[65];
		rc = gn_ed25519_generate(&k, err);
		if (!rc)
			rc = insert_key(c, repo, online_roles[i], k, true, keyid, err);
		gn_ed25519_key_free(k);
		if (rc)
			goto out;
	}
	if ((rc = build_root(&s, c, repo, 1, gd.cfg.tuf_root_threshold, err)) ||
	    (rc = store(NULL, c, repo, "root", 1, s, keys, nkeys, gn_now() + lifetime("root"), err)))
		goto out;
	if (image)
		rc = publish_targets_locked(c, err);
out:
	free_keys(keys, nkeys);
	json_decref(s);
	free(dir);
	latest_cleanup(&root);
	return rc;
}

int tufrepo_init(db_conn *c, gn_err *err)
{
	int rc;
	if ((rc = db_exec_sql(c, "BEGIN", err)) || (rc = db_exec_sql(c, TUF_LOCK_SQL, err)) ||
	    (rc = init_repo(c, "image", err)) || (rc = init_repo(c, "director", err)) ||
	    (rc = db_exec_sql(c, "COMMIT", err)))
		db_exec_sql_logged(c, "ROLLBACK");
	return rc;
}

int tufrepo_refresh(db_conn *c, gn_err *err)
{
	struct latest l;
	int rc;
	int64_t now = gn_now();
	memset(&l, 0, sizeof(l));
	if ((rc = db_exec_sql(c, "BEGIN", err)) || (rc = db_exec_sql(c, TUF_LOCK_SQL, err)))
		goto out;
	/* The first role found at less than half its lifetime is re-signed with everything below it. */
	static const char *const repos[] = {"image", "director"};
	for (size_t i = 0; i < GN_ARRAY_LEN(repos); i++) {
		if ((rc = get_latest(&l, c, repos[i], "root", err)))
			goto out;
		if (l.version && l.expires - now < (l.expires - l.created) / 2) {
			gn_err why;
			if (publish_root(c, repos[i], &l, &why))
				gn_log(GN_LOG_WARN, "event=tuf_root_expiring repo=%s expires_in_s=%lld msg=\"%s\"", repos[i],
				       (long long)(l.expires - now), why.msg);
		}
		latest_cleanup(&l);
	}
	if ((rc = get_latest(&l, c, "image", "targets", err)))
		goto out;
	if (l.version && l.expires - now < (l.expires - l.created) / 2) {
		rc = publish_targets_locked(c, err);
		goto commit;
	}
	latest_cleanup(&l);
	if ((rc = get_latest(&l, c, "image", "snapshot", err)))
		goto out;
	if (l.version && l.expires - now < (l.expires - l.created) / 2) {
		struct latest tg;
		if ((rc = get_latest(&tg, c, "image", "targets", err)))
			goto out;
		rc = publish_snapshot(c, tg.version, err);
		latest_cleanup(&tg);
		goto commit;
	}
	int64_t sv = l.version;
	char *sbody = l.body ? gn_strdup(l.body) : NULL;
	latest_cleanup(&l);
	if ((rc = get_latest(&l, c, "image", "timestamp", err))) {
		free(sbody);
		goto out;
	}
	if (l.version && sbody && l.expires - now < (l.expires - l.created) / 2)
		rc = publish_timestamp(c, (int)sv, sbody, err);
	free(sbody);
commit:
	if (!rc)
		rc = db_exec_sql(c, "COMMIT", err);
out:
	if (rc)
		db_exec_sql_logged(c, "ROLLBACK");
	latest_cleanup(&l);
	return rc;
}

int tufrepo_get(char **out, db_conn *c, const char *repo, const char *role, int version, gn_err *err)
{
	if (version == 0) {
		struct latest l;
		int rc = get_latest(&l, c, repo, role, err);
		if (rc)
			return rc;
		if (!l.version) {
			latest_cleanup(&l);
			return gn_err_set(err, GN_ENOTFOUND, "no %s metadata yet", role);
		}
		*out = l.body;
		l.body = NULL;
		latest_cleanup(&l);
		return 0;
	}
	PGresult *res = NULL;
	char ver[16];
	snprintf(ver, sizeof(ver), "%d", version);
	const char *p[] = {repo, role, ver};
	int rc = db_exec(&res, c, &st_get, p, err);
	if (rc)
		return rc;
	if (PQntuples(res) == 0)
		rc = gn_err_set(err, GN_ENOTFOUND, "no %s metadata version %d", role, version);
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return rc;
}

int tufrepo_keys_list(json_t **out, db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	int rc = db_exec(&res, c, &st_keys_list, NULL, err);
	if (rc)
		return rc;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	/* Root keys are "online" to this server when their file is here; they carry the threshold. */
	size_t i;
	json_t *k;
	json_int_t thresholds[2] = {0, 0};
	static const char *const repos[] = {"image", "director"};
	for (int r = 0; r < 2; r++) {
		struct latest root;
		gn_err ignore;
		if (get_latest(&root, c, repos[r], "root", &ignore) == 0) {
			thresholds[r] = json_integer_value(json_object_get(
				json_object_get(json_object_get(json_object_get(root.env, "signed"), "roles"), "root"), "threshold"));
			latest_cleanup(&root);
		}
	}
	json_array_foreach(*out, i, k)
	{
		if (strcmp(json_string_value(json_object_get(k, "role")), "root") != 0)
			continue;
		json_object_set_new(k, "threshold",
				    json_integer(thresholds[strcmp(json_string_value(json_object_get(k, "repo")), "image") == 0 ? 0 : 1]));
		char *path = root_key_path(json_string_value(json_object_get(k, "repo")),
					   json_string_value(json_object_get(k, "keyid")));
		struct stat st;
		json_object_set_new(k, "online", json_boolean(stat(path, &st) == 0));
		free(path);
	}
	return 0;
}

int tufrepo_rotate(json_t **out, db_conn *c, const char *role, gn_err *err)
{
	struct latest root;
	gn_ed25519_key *k = NULL;
	char keyid[65];
	int rc;
	memset(&root, 0, sizeof(root));
	if ((rc = db_exec_sql(c, "BEGIN", err)) || (rc = db_exec_sql(c, TUF_LOCK_SQL, err)) ||
	    (rc = get_latest(&root, c, "image", "root", err)) || (rc = gn_ed25519_generate(&k, err)) ||
	    (rc = insert_key(c, "image", role, k, true, keyid, err)))
		goto out;
	json_int_t threshold = json_integer_value(json_object_get(
		json_object_get(json_object_get(json_object_get(root.env, "signed"), "roles"), "root"), "threshold"));
	if ((json_int_t)root_keys_here("image", &root) < threshold) {
		/* Root keys are offline: the new key waits for a root signed elsewhere that lists it. */
		const char *pp[] = {"image", role, keyid};
		if ((rc = db_exec(NULL, c, &st_key_pending, pp, err)) || (rc = db_exec_sql(c, "COMMIT", err)))
			goto out;
		*out = json_pack("{s:s,s:s,s:b,s:s}", "role", role, "keyid", keyid, "pending", 1, "next",
				 "the root keys are offline: export the draft root (it lists the new key), sign it "
				 "with `ganglion keys sign-root`, and import it; the old key signs until then");
		gn_log(GN_LOG_INFO, "event=tuf_key_pending role=%s keyid=%s", role, keyid);
		goto out;
	}
	char arr[80];
	snprintf(arr, sizeof(arr), "{%s}", keyid);
	const char *p[] = {"image", role, arr};
	if ((rc = db_exec(NULL, c, &st_key_retire_others, p, err)) || (rc = publish_root(c, "image", &root, err)) ||
	    (rc = publish_targets_locked(c, err)) || (rc = db_exec_sql(c, "COMMIT", err)))
		goto out;
	*out = json_pack("{s:s,s:s,s:i,s:b}", "role", role, "keyid", keyid, "root_version", root.version + 1,
			 "pending", 0);
	gn_log(GN_LOG_INFO, "event=tuf_key_rotated role=%s keyid=%s", role, keyid);
out:
	if (rc)
		db_exec_sql_logged(c, "ROLLBACK");
	gn_ed25519_key_free(k);
	latest_cleanup(&root);
	return rc;
}

int tufrepo_root_draft(json_t **out, db_conn *c, gn_err *err)
{
	struct latest root;
	json_t *s = NULL;
	int rc = get_latest(&root, c, "image", "root", err);
	if (rc)
		return rc;
	json_int_t threshold = json_integer_value(json_object_get(
		json_object_get(json_object_get(json_object_get(root.env, "signed"), "roles"), "root"), "threshold"));
	rc = build_root_from(&s, c, &st_keys_draft, "image", root.version + 1, threshold, err);
	if (!rc)
		*out = json_pack("{s:o,s:[]}", "signed", s, "signatures");
	latest_cleanup(&root);
	return rc;
}

static bool same_keyids(const json_t *a, const json_t *b, const char *role)
{
	const json_t *ka = json_object_get(json_object_get(json_object_get(a, "roles"), role), "keyids");
	const json_t *kb = json_object_get(json_object_get(json_object_get(b, "roles"), role), "keyids");
	return ka && kb && json_equal((json_t *)ka, (json_t *)kb);
}

int tufrepo_root_import(db_conn *c, const json_t *env, gn_err *err)
{
	struct latest cur;
	json_t *draft = NULL;
	int rc;
	int64_t exp;
	memset(&cur, 0, sizeof(cur));
	const json_t *s = json_object_get(env, "signed");
	if ((rc = db_exec_sql(c, "BEGIN", err)) || (rc = db_exec_sql(c, TUF_LOCK_SQL, err)) ||
	    (rc = get_latest(&cur, c, "image", "root", err)))
		goto out;
	const json_t *cur_signed = json_object_get(cur.env, "signed");
	if (!json_is_object(s) || !json_is_string(json_object_get(s, "_type")) ||
	    strcmp(json_string_value(json_object_get(s, "_type")), "root") != 0) {
		rc = gn_err_set(err, GN_EINVAL, "not root metadata");
		goto out;
	}
	if (json_integer_value(json_object_get(s, "version")) != cur.version + 1) {
		rc = gn_err_set(err, GN_EINVAL, "root version must be %d (the current one is %d)", cur.version + 1,
				cur.version);
		goto out;
	}
	if (gn_tuf_time_parse(&exp, json_string_value(json_object_get(s, "expires"))) || exp <= gn_now()) {
		rc = gn_err_set(err, GN_EINVAL, "root 'expires' is missing, malformed or in the past");
		goto out;
	}
	/* Refuse a root that would break the repository for TUF clients, however well signed. */
	const char *spec = json_string_value(json_object_get(s, "spec_version"));
	if (!spec || strncmp(spec, "1.", 2) != 0) {
		rc = gn_err_set(err, GN_EINVAL, "root spec_version must be 1.x (TUF 1.0)");
		goto out;
	}
	if (!json_is_true(json_object_get(s, "consistent_snapshot"))) {
		rc = gn_err_set(err, GN_EINVAL, "root must keep consistent_snapshot true: the repository serves N.ROLE.json files");
		goto out;
	}
	static const char *const all_roles[] = {"root", "targets", "snapshot", "timestamp"};
	for (size_t i = 0; i < GN_ARRAY_LEN(all_roles); i++) {
		const json_t *role = json_object_get(json_object_get(s, "roles"), all_roles[i]);
		json_int_t t = json_integer_value(json_object_get(role, "threshold"));
		const json_t *ids = json_object_get(role, "keyids");
		size_t nk = json_array_size(ids);
		for (size_t a2 = 0; a2 < nk; a2++)
			for (size_t b2 = a2 + 1; b2 < nk; b2++)
				if (json_equal(json_array_get(ids, a2), json_array_get(ids, b2))) {
					rc = gn_err_set(err, GN_EINVAL, "root role %s lists a key id twice", all_roles[i]);
					goto out;
				}
		if (!json_is_integer(json_object_get(role, "threshold")) || t < 1 || (size_t)t > nk) {
			rc = gn_err_set(err, GN_EINVAL, "root role %s needs a threshold from 1 to its %zu key(s)", all_roles[i], nk);
			goto out;
		}
	}
	/* Online roles must list the keys the server signs with: the current ones, or a pending
	 * rotation's (as the draft shows them). */
	if ((rc = build_root_from(&draft, c, &st_keys_draft, "image", cur.version + 1, 1, err)))
		goto out;
	for (size_t i = 0; i < GN_ARRAY_LEN(online_roles); i++) {
		const json_t *nr = json_object_get(json_object_get(s, "roles"), online_roles[i]);
		const json_t *cr = json_object_get(json_object_get(cur_signed, "roles"), online_roles[i]);
		if (!json_equal(json_object_get(nr, "threshold"), json_object_get(cr, "threshold"))) {
			rc = gn_err_set(err, GN_EINVAL, "the %s role's threshold differs from the current root's", online_roles[i]);
			goto out;
		}
		if (!same_keyids(s, cur_signed, online_roles[i]) && !same_keyids(s, draft, online_roles[i])) {
			rc = gn_err_set(err, GN_EINVAL,
					"the %s role's keys are neither the current ones nor a pending rotation's; rotate "
					"online keys with POST /v1/keys/rotate, then export the draft",
					online_roles[i]);
			goto out;
		}
	}
	/* TUF's rule for a new root: a threshold of the old root's keys and of its own. */
	if ((rc = gn_tuf_verify_role(env, cur_signed, "root", err)) || (rc = gn_tuf_verify_role(env, s, "root", err))) {
		if (rc == GN_EAUTH)
			rc = GN_EINVAL;
		if (err)
			err->code = rc;
		goto out;
	}
	/* Record the root keys the new root names, retire the others. */
	const json_t *ids = json_object_get(json_object_get(json_object_get(s, "roles"), "root"), "keyids");
	gn_buf arr;
	gn_buf_init(&arr);
	gn_buf_puts(&arr, "{");
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id)
	{
		const char *pub = json_string_value(json_object_get(
			json_object_get(json_object_get(json_object_get(s, "keys"), json_string_value(id)), "keyval"), "public"));
		const char *p[] = {json_string_value(id), "image", "root", pub ? pub : "", NULL};
		if (!rc)
			rc = db_exec(NULL, c, &st_key_insert, p, err);
		gn_buf_printf(&arr, "%s%s", i ? "," : "", json_string_value(id));
	}
	gn_buf_puts(&arr, "}");
	const char *pr[] = {"image", "root", arr.data};
	if (!rc)
		rc = db_exec(NULL, c, &st_key_retire_others, pr, err);
	gn_buf_cleanup(&arr);
	if (rc)
		goto out;
	char *body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS), ver[16], exps[32];
	snprintf(ver, sizeof(ver), "%d", cur.version + 1);
	snprintf(exps, sizeof(exps), "%lld", (long long)exp);
	const char *p[] = {"image", "root", ver, body, exps};
	rc = db_exec(NULL, c, &st_store, p, err);
	free(body);
	/* Keys the new root brings in from a pending rotation sign from now on. */
	bool rotated = false;
	for (size_t r = 0; !rc && r < GN_ARRAY_LEN(online_roles); r++) {
		if (same_keyids(s, cur_signed, online_roles[r]))
			continue;
		const char *pa[] = {"image", online_roles[r]};
		rc = db_exec(NULL, c, &st_key_activate_pending, pa, err);
		rotated = true;
	}
	if (!rc && rotated)
		rc = publish_targets_locked(c, err);
	if (!rc)
		rc = db_exec_sql(c, "COMMIT", err);
	if (!rc)
		gn_log(GN_LOG_INFO, "event=tuf_root_imported version=%d rotated_online_keys=%s", cur.version + 1,
		       rotated ? "yes" : "no");
out:
	if (rc)
		db_exec_sql_logged(c, "ROLLBACK");
	json_decref(draft);
	latest_cleanup(&cur);
	return rc;
}

/* --- the director: per-device targets ------------------------------------------------------ */

static const db_stmt st_dt_latest = {
	"director_latest",
	"SELECT version, body, extract(epoch FROM expires_at)::bigint, extract(epoch FROM created_at)::bigint,"
	" coalesce(model, ''), coalesce(model_version, ''), coalesce(gn_ts(assigned_at), '')"
	" FROM director_targets WHERE device_id = $1"
	" ORDER BY version DESC LIMIT 1",
	1};
static const db_stmt st_dt_desired = {
	"director_desired",
	"SELECT d.model, d.version, v.filename, v.sha256, v.length, gn_ts(d.assigned_at) FROM device_desired d"
	" JOIN model_versions v ON v.model = d.model AND v.version = d.version WHERE d.device_id = $1",
	1};
static const db_stmt st_dt_store = {
	"director_store",
	"INSERT INTO director_targets (device_id, version, body, model, model_version, expires_at, assigned_at)"
	" VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), to_timestamp($6::bigint), nullif($7, '')::timestamptz)",
	7};
static const db_stmt st_dt_lock = {"director_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 11))", 1};

struct dt_state {
	int version;
	char *body;
	int64_t expires, created;
	char model[128], model_version[72], assigned_at[24];
	/* desired */
	bool has_desired;
	char want_model[128], want_version[72], filename[160], sha256[65], length[32], want_assigned_at[24];
};

static int dt_read(struct dt_state *st, db_conn *c, const char *device_id, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {device_id};
	int rc = db_exec(&res, c, &st_dt_latest, p, err);
	if (rc)
		return rc;
	if (PQntuples(res) == 1) {
		st->version = atoi(PQgetvalue(res, 0, 0));
		st->body = gn_strdup(PQgetvalue(res, 0, 1));
		st->expires = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		st->created = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		snprintf(st->model, sizeof(st->model), "%s", PQgetvalue(res, 0, 4));
		snprintf(st->model_version, sizeof(st->model_version), "%s", PQgetvalue(res, 0, 5));
		snprintf(st->assigned_at, sizeof(st->assigned_at), "%s", PQgetvalue(res, 0, 6));
	}
	PQclear(res);
	if ((rc = db_exec(&res, c, &st_dt_desired, p, err)))
		return rc;
	if (PQntuples(res) == 1) {
		st->has_desired = true;
		snprintf(st->want_model, sizeof(st->want_model), "%s", PQgetvalue(res, 0, 0));
		snprintf(st->want_version, sizeof(st->want_version), "%s", PQgetvalue(res, 0, 1));
		snprintf(st->filename, sizeof(st->filename), "%s", PQgetvalue(res, 0, 2));
		snprintf(st->sha256, sizeof(st->sha256), "%s", PQgetvalue(res, 0, 3));
		snprintf(st->length, sizeof(st->length), "%s", PQgetvalue(res, 0, 4));
		snprintf(st->want_assigned_at, sizeof(st->want_assigned_at), "%s", PQgetvalue(res, 0, 5));
	}
	PQclear(res);
	return 0;
}

static bool dt_stale(const struct dt_state *st, int64_t now)
{
	if (!st->version)
		return true;
	if (strcmp(st->model, st->has_desired ? st->want_model : "") != 0 ||
	    strcmp(st->model_version, st->has_desired ? st->want_version : "") != 0 ||
	    strcmp(st->assigned_at, st->has_desired ? st->want_assigned_at : "") != 0)
		return true;
	return st->expires - now < (st->expires - st->created) / 2;
}

static int dt_sign(struct dt_state *st, db_conn *c, const char *device_id, gn_err *err)
{
	char ver[16], exps[32];
	int64_t exp = gn_now() + gd.cfg.tuf_director_expiry;
	json_t *s = header("targets", st->version + 1, exp), *targets = json_object();
	char *body = NULL;
	if (st->has_desired) {
		char *path = gn_asprintf("models/%s/%s/%s", st->want_model, st->want_version, st->filename);
		json_object_set_new(targets, path,
				    json_pack("{s:I,s:{s:s},s:{s:s,s:s,s:s,s:s}}", "length",
					      (json_int_t)strtoll(st->length, NULL, 10), "hashes", "sha256", st->sha256,
					      "custom", "device_id", device_id, "model", st->want_model, "version",
					      st->want_version, "assigned_at", st->want_assigned_at));
		free(path);
	}
	json_object_set_new(s, "targets", targets);
	/* The device id is inside what is signed: metadata for one device is useless to another. */
	char issued[21];
	gn_tuf_time(issued, gn_now());
	json_object_set_new(s, "custom", json_pack("{s:s,s:s}", "device_id", device_id, "issued_at", issued));
	gn_ed25519_key *key = NULL;
	json_t *env = NULL;
	int rc = online_key(&key, c, "director", "targets", err);
	if (!rc)
		rc = gn_tuf_sign(&env, s, &key, 1, err);
	gn_ed25519_key_free(key);
	json_decref(s);
	if (rc)
		return rc;
	body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(env);
	snprintf(ver, sizeof(ver), "%d", st->version + 1);
	snprintf(exps, sizeof(exps), "%lld", (long long)exp);
	const char *p[] = {device_id, ver, body, st->has_desired ? st->want_model : "",
			   st->has_desired ? st->want_version : "", exps, st->has_desired ? st->want_assigned_at : ""};
	rc = db_exec(NULL, c, &st_dt_store, p, err);
	if (rc) {
		free(body);
		return rc;
	}
	free(st->body);
	st->body = body;
	st->version++;
	st->created = exp - gd.cfg.tuf_director_expiry;
	st->expires = exp;
	return 0;
}

int tufrepo_director_current(char **out_body, int *out_version, int64_t *out_fresh_until, db_conn *c,
			     const char *device_id, gn_err *err)
{
	struct dt_state st;
	int rc;
	memset(&st, 0, sizeof(st));
	/* Most check-ins find nothing to sign: decide on a plain read, lock only to sign. */
	if ((rc = dt_read(&st, c, device_id, err)))
		goto out;
	if (dt_stale(&st, gn_now())) {
		free(st.body);
		memset(&st, 0, sizeof(st));
		const char *p[] = {device_id};
		if ((rc = db_exec_sql(c, "BEGIN", err)) || (rc = db_exec(NULL, c, &st_dt_lock, p, err)) ||
		    (rc = dt_read(&st, c, device_id, err)) ||
		    (dt_stale(&st, gn_now()) && (rc = dt_sign(&st, c, device_id, err))) ||
		    (rc = db_exec_sql(c, "COMMIT", err))) {
			db_exec_sql_logged(c, "ROLLBACK");
			goto out;
		}
	}
	*out_body = st.body;
	*out_version = st.version;
	if (out_fresh_until)
		*out_fresh_until = st.created + (st.expires - st.created) / 2;
	st.body = NULL;
out:
	free(st.body);
	return rc;
}
