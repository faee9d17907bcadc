/* Keys and roots of the TUF image and director repositories. */
#include "tuf_keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audit.h"
#include "director.h"
#include "log.h"
#include "tuf.h"
#include "tuf_image.h"

static const char *const online_roles[] = {"targets", "snapshot", "timestamp"};
static const char *const all_roles[] = {"root", "targets", "snapshot", "timestamp"};
static const char *const repos[] = {"image", "director"};

/* The roles a repository's root lists: all four, for the image repository and for the director
 * (a full TUF repository per device; its roots before that listed only root and targets). */
static size_t repo_nroles(const char *repo)
{
	(void)repo;
	return GN_ARRAY_LEN(all_roles);
}

/* The online roles of a repository. */
static size_t repo_nonline(const char *repo)
{
	return repo_nroles(repo) - 1;
}

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
static const db_stmt st_key_exists = {
	"tuf_key_exists", "SELECT 1 FROM tuf_keys WHERE repo = $1 AND role = $2 AND (active OR pending) LIMIT 1", 2};
static const db_stmt st_key_insert = {
	"tuf_key_insert",
	"INSERT INTO tuf_keys (keyid, repo, role, public, private_pem) VALUES ($1, $2, $3, $4, $5)"
	" ON CONFLICT (keyid) DO UPDATE SET active = true",
	5};
static const db_stmt st_key_retire_others = {
	"tuf_key_retire_others",
	"UPDATE tuf_keys SET active = false WHERE repo = $1 AND role = $2 AND active AND keyid <> ALL($3::text[])", 3};
static const db_stmt st_keys_list = {
	"tuf_keys_list",
	"SELECT coalesce(jsonb_agg(jsonb_build_object('keyid', keyid, 'repo', repo, 'role', role, 'public', public,"
	" 'online', private_pem IS NOT NULL, 'active', active, 'created_at', gn_ts(created_at))"
	" ORDER BY repo DESC, role, created_at), '[]')::text FROM tuf_keys WHERE active",
	0};
/* --- root keys on disk ---------------------------------------------------------------------- */

/* Returns where a root key's private half lives (new). */
static char *root_key_path(const struct tuf_settings *s, const char *repo, const char *keyid)
{
	return gn_asprintf("%s/keys/%sroot-%s.pem", s->data_dir, strcmp(repo, "image") == 0 ? "" : "director-", keyid);
}

static void free_keys(gn_ed25519_key **keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		gn_ed25519_key_free(keys[i]);
	free(keys);
}

/* Loads the root private keys this server holds among keyids; returns how many (*out is new). */
static size_t load_root_keys(gn_ed25519_key ***out, const struct tuf_settings *s, const char *repo,
			     const json_t *keyids)
{
	size_t n = 0, i;
	json_t *k;
	gn_ed25519_key **keys = gn_calloc(json_array_size(keyids) + 1, sizeof(*keys));
	json_array_foreach(keyids, i, k) {
		gn_err ignore;
		char *path = root_key_path(s, repo, json_string_value(k));
		if (gn_ed25519_load(&keys[n], path, &ignore) == 0)
			n++;
		free(path);
	}
	*out = keys;
	return n;
}

static const json_t *root_keyids(const json_t *root_signed)
{
	return json_object_get(json_object_get(json_object_get(root_signed, "roles"), "root"), "keyids");
}

/* The number of the current root's keys whose private half is here. */
static size_t root_keys_here(const struct tuf_settings *s, const char *repo, const struct tuf_latest *root)
{
	gn_ed25519_key **keys = NULL;
	size_t n = load_root_keys(&keys, s, repo, root_keyids(json_object_get(root->env, "signed")));
	free_keys(keys, n);
	return n;
}

/* --- building and publishing roots ------------------------------------------------------------ */

/* Records a key (its private half too when keep_private) and writes its key id into keyid. */
static int insert_key(char keyid[65], db_conn *c, const char *repo, const char *role, gn_ed25519_key *key,
		      bool keep_private, gn_err *err)
{
	unsigned char pub[GN_ED25519_PUB_LEN];
	char hex[2 * GN_ED25519_PUB_LEN + 1];
	gn_ed25519_public(pub, key);
	gn_hex_encode(hex, pub, sizeof(pub));
	json_t *kj = gn_tuf_key_json(pub);
	int error = gn_tuf_keyid(keyid, kj, err);
	json_decref(kj);
	if (error)
		return error;
	char *pem = keep_private ? gn_ed25519_to_pem(key) : NULL;
	const char *p[] = {keyid, repo, role, hex, pem};
	error = db_exec(NULL, c, &st_key_insert, p, err);
	free(pem);
	return error;
}

/* Builds the signed part of a root of repo from the keys keys_st selects. */
static int build_root(json_t **out, db_conn *c, const struct tuf_settings *s, const db_stmt *keys_st, const char *repo,
		      int version, json_int_t root_threshold, gn_err *err)
{
	PGresult *res = NULL;
	const char *pk[] = {repo};
	int error = db_exec(&res, c, keys_st, pk, err);
	if (error)
		return error;
	json_t *keys = json_object(), *roles = json_object();
	for (size_t i = 0; i < repo_nroles(repo); i++)
		json_object_set_new(roles, all_roles[i],
				    json_pack("{s:[],s:I}", "keyids", "threshold",
					      strcmp(all_roles[i], "root") == 0 ? root_threshold : (json_int_t)1));
	for (int i = 0; i < PQntuples(res); i++) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		if (gn_hex_decode(pub, sizeof(pub), PQgetvalue(res, i, 2)))
			continue;
		json_object_set_new(keys, PQgetvalue(res, i, 0), gn_tuf_key_json(pub));
		json_array_append_new(json_object_get(json_object_get(roles, PQgetvalue(res, i, 1)), "keyids"),
				      json_string(PQgetvalue(res, i, 0)));
	}
	PQclear(res);
	json_t *sp = tuf_sign_header("root", version, gn_now() + tuf_sign_lifetime(s, "root"));
	json_object_set_new(sp, "consistent_snapshot", json_true());
	json_object_set_new(sp, "keys", keys);
	json_object_set_new(sp, "roles", roles);
	*out = sp;
	return 0;
}

/* Publishes root N+1 from the active keys, signed with the root keys on disk; they must meet the
 * threshold of the current root (cur). GN_ECONFLICT when this server holds too few. */
static int publish_root(db_conn *c, const struct tuf_settings *s, const char *repo, const struct tuf_latest *cur,
			gn_err *err)
{
	json_t *sp = NULL;
	gn_ed25519_key **keys = NULL;
	size_t n = 0;
	json_int_t threshold = tuf_sign_root_threshold(cur);
	int error = build_root(&sp, c, s, &st_keys_active, repo, cur->version + 1, threshold, err);
	if (error)
		return error;
	n = load_root_keys(&keys, s, repo, root_keyids(json_object_get(cur->env, "signed")));
	if ((json_int_t)n < threshold) {
		error = gn_err_set(err, GN_ECONFLICT,
				   "this server holds %zu of the %lld %s root keys needed to sign a new root; export "
				   "the draft (GET /v1/tuf/%s/root/draft), sign it offline with `ganglion keys "
				   "sign-root` and import it",
				   n, (long long)threshold, repo, repo);
		goto out;
	}
	error = tuf_sign_store(NULL, c, repo, "root", cur->version + 1, sp, keys, n,
			       gn_now() + tuf_sign_lifetime(s, "root"), err);
out:
	free_keys(keys, n);
	json_decref(sp);
	return error;
}

/* Generates root keys, saving them in data_dir/keys (*out is new, s->root_keys of them). */
static int create_root_keys(gn_ed25519_key ***out, db_conn *c, const struct tuf_settings *s, const char *repo,
			    gn_err *err)
{
	int error = 0;
	char *dir = gn_asprintf("%s/keys", s->data_dir);
	gn_ed25519_key **keys = gn_calloc((size_t)s->root_keys, sizeof(*keys));
	*out = keys;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		error = gn_err_set(err, GN_ERROR, "cannot create %s: %s", dir, strerror(errno));
		goto out;
	}
	for (int i = 0; i < s->root_keys; i++) {
		char keyid[65];
		if ((error = gn_ed25519_generate(&keys[i], err)) ||
		    (error = insert_key(keyid, c, repo, "root", keys[i], false, err)))
			goto out;
		char *path = root_key_path(s, repo, keyid);
		if (!(error = gn_ed25519_save(keys[i], path, err)))
			gn_log(GN_LOG_INFO, "event=tuf_root_key_created repo=%s keyid=%s file=%s", repo, keyid, path);
		free(path);
		if (error)
			goto out;
	}
out:
	free(dir);
	return error;
}

/* Generates the online keys of repo: targets, snapshot and timestamp for the image repository,
 * targets for the director. */
static int create_online_keys(db_conn *c, const char *repo, gn_err *err)
{
	for (size_t i = 0; i < repo_nonline(repo); i++) {
		gn_ed25519_key *k = NULL;
		char keyid[65];
		int error = gn_ed25519_generate(&k, err);
		if (!error)
			error = insert_key(keyid, c, repo, online_roles[i], k, true, err);
		gn_ed25519_key_free(k);
		if (error)
			return error;
	}
	return 0;
}

/* Creates repo's keys and first root unless it has a root; *out_created tells whether it did.
 * Inside the caller's locked transaction. */
static int create_repo(bool *out_created, db_conn *c, const struct tuf_settings *s, const char *repo, gn_err *err)
{
	struct tuf_latest root;
	gn_ed25519_key **keys = NULL;
	json_t *sp = NULL;
	int error;
	*out_created = false;
	if ((error = tuf_sign_latest(&root, c, repo, "root", err)) || root.version > 0)
		goto out;
	if ((error = create_root_keys(&keys, c, s, repo, err)) || (error = create_online_keys(c, repo, err)) ||
	    (error = build_root(&sp, c, s, &st_keys_active, repo, 1, s->root_threshold, err)) ||
	    (error = tuf_sign_store(NULL, c, repo, "root", 1, sp, keys, (size_t)s->root_keys,
				    gn_now() + tuf_sign_lifetime(s, "root"), err)))
		goto out;
	*out_created = true;
out:
	free_keys(keys, keys ? (size_t)s->root_keys : 0);
	json_decref(sp);
	tuf_sign_latest_cleanup(&root);
	return error;
}

/* Generates an online key for the director's role unless it has one (active or pending);
 * pending when its root keys are not here. *out_added tells whether it did. */
static int add_director_key(bool *out_added, db_conn *c, const char *role, bool pending, gn_err *err)
{
	PGresult *res = NULL;
	gn_ed25519_key *k = NULL;
	char keyid[65];
	const char *p[] = {"director", role};
	int error = db_exec(&res, c, &st_key_exists, p, err);
	*out_added = false;
	if (error || PQntuples(res) > 0)
		goto out;
	if ((error = gn_ed25519_generate(&k, err)) || (error = insert_key(keyid, c, "director", role, k, true, err)))
		goto out;
	const char *pp[] = {"director", role, keyid};
	if (pending && (error = db_exec(NULL, c, &st_key_pending, pp, err)))
		goto out;
	*out_added = true;
	gn_log(GN_LOG_INFO, "event=tuf_key_created repo=director role=%s keyid=%s pending=%s", role, keyid,
	       pending ? "yes" : "no");
out:
	gn_ed25519_key_free(k);
	PQclear(res);
	return error;
}

/* A director whose root lists only root and targets (before it was a full repository) gets
 * online snapshot and timestamp keys. With a threshold of its root keys here a new root lists them
 * at once; else they wait, pending, for a root signed offline (the draft lists them), and until
 * then each device's director keeps only targets. Inside the caller's locked transaction. */
static int upgrade_director(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	struct tuf_latest root;
	bool added[2] = {false, false};
	int error = tuf_sign_latest(&root, c, "director", "root", err);
	const json_t *roles = json_object_get(json_object_get(root.env, "signed"), "roles");
	if (error || !root.version || json_object_get(roles, "timestamp"))
		goto out;
	bool here = (json_int_t)root_keys_here(s, "director", &root) >= tuf_sign_root_threshold(&root);
	if ((error = add_director_key(&added[0], c, "snapshot", !here, err)) ||
	    (error = add_director_key(&added[1], c, "timestamp", !here, err)))
		goto out;
	if (here) {
		if (!(error = publish_root(c, s, "director", &root, err)))
			error = director_key_changed(c, err);
	} else if (added[0] || added[1]) {
		gn_log(GN_LOG_WARN,
		       "event=tuf_director_upgrade_pending msg=\"the director root lists only root and targets and its "
		       "root keys are offline: export the draft root (ganglion keys export-root --repo director; it "
		       "lists new snapshot and timestamp keys), sign it offline and import it\"");
	}
out:
	tuf_sign_latest_cleanup(&root);
	return error;
}

int tuf_keys_init(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	bool image_created, director_created;
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = create_repo(&image_created, c, s, "image", err)) ||
	    (image_created && (error = tuf_image_publish_targets(c, s, err))) ||
	    (error = create_repo(&director_created, c, s, "director", err)) || (error = upgrade_director(c, s, err)) ||
	    (error = db_tx_commit(c, err)))
		db_tx_rollback(c);
	return error;
}

/* --- refresh and listing -------------------------------------------------------------------- */

/* Signs a new root of repo if the current one is due; too few root keys here is only logged. */
static int refresh_root(db_conn *c, const struct tuf_settings *s, const char *repo, int64_t now, gn_err *err)
{
	struct tuf_latest l;
	int error = tuf_sign_latest(&l, c, repo, "root", err);
	if (!error && l.version && tuf_sign_due(l.created, l.expires, now)) {
		gn_err why;
		if (publish_root(c, s, repo, &l, &why))
			gn_log(GN_LOG_WARN, "event=tuf_root_expiring repo=%s expires_in_s=%lld msg=\"%s\"", repo,
			       (long long)(l.expires - now), why.msg);
	}
	tuf_sign_latest_cleanup(&l);
	return error;
}

int tuf_keys_refresh(db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	int64_t now = gn_now();
	int error;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)))
		goto out;
	for (size_t i = 0; i < GN_ARRAY_LEN(repos) && !error; i++)
		error = refresh_root(c, s, repos[i], now, err);
	if (!error)
		error = db_tx_commit(c, err);
out:
	if (error)
		db_tx_rollback(c);
	return error;
}

/* Adds "threshold" (the current root's) and "online" (its file is here) to each root key. */
static void describe_root_keys(json_t *list, db_conn *c, const struct tuf_settings *s)
{
	json_int_t thresholds[GN_ARRAY_LEN(repos)] = {0, 0};
	for (size_t r = 0; r < GN_ARRAY_LEN(repos); r++) {
		struct tuf_latest root;
		gn_err ignore;
		if (tuf_sign_latest(&root, c, repos[r], "root", &ignore) == 0)
			thresholds[r] = tuf_sign_root_threshold(&root);
		tuf_sign_latest_cleanup(&root);
	}
	size_t i;
	json_t *k;
	json_array_foreach(list, i, k) {
		if (strcmp(json_string_value(json_object_get(k, "role")), "root") != 0)
			continue;
		const char *repo = json_string_value(json_object_get(k, "repo"));
		json_object_set_new(k, "threshold", json_integer(thresholds[strcmp(repo, "image") == 0 ? 0 : 1]));
		char *path = root_key_path(s, repo, json_string_value(json_object_get(k, "keyid")));
		struct stat st;
		json_object_set_new(k, "online", json_boolean(stat(path, &st) == 0));
		free(path);
	}
}

int tuf_keys_list(json_t **out, db_conn *c, const struct tuf_settings *s, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, &st_keys_list, NULL, err);
	if (error)
		return error;
	*out = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	PQclear(res);
	if (!*out)
		return gn_err_set(err, GN_ERROR, "cannot read the key list");
	describe_root_keys(*out, c, s);
	return 0;
}

/* --- rotation of online keys ------------------------------------------------------------------ */

/* After repo's online keys changed: the image repository signs fresh targets, snapshot and
 * timestamp with them; the director makes each device's targets be signed anew. */
static int republish(db_conn *c, const struct tuf_settings *s, const char *repo, gn_err *err)
{
	if (strcmp(repo, "director") == 0)
		return director_key_changed(c, err);
	return tuf_image_publish_targets(c, s, err);
}

/* The root keys are offline: the new key waits for a root signed elsewhere that lists it. */
static int rotate_pending(json_t **out, db_conn *c, const char *repo, const char *role, const char *key_role,
			  const char *keyid, gn_err *err)
{
	const char *p[] = {repo, key_role, keyid};
	int error = db_exec(NULL, c, &st_key_pending, p, err);
	if (error)
		return error;
	const char *flag = strcmp(repo, "image") == 0 ? "" : " --repo director";
	char *next = gn_asprintf("the %s root keys are offline: export the draft root (`ganglion keys export-root%s`; "
				 "it lists the new key), sign it with `ganglion keys sign-root`, and import it "
				 "(`ganglion keys import-root%s`); the old key signs until then",
				 repo, flag, flag);
	*out = json_pack("{s:s,s:s,s:b,s:s}", "role", role, "keyid", keyid, "pending", 1, "next", next);
	free(next);
	gn_log(GN_LOG_INFO, "event=tuf_key_pending repo=%s role=%s keyid=%s", repo, key_role, keyid);
	return 0;
}

/* The root keys are here: the new key replaces the old at once, under a new root. */
static int rotate_now(json_t **out, db_conn *c, const struct tuf_settings *s, const char *repo, const char *role,
		      const char *key_role, const char *keyid, const struct tuf_latest *root, gn_err *err)
{
	char arr[80];
	snprintf(arr, sizeof(arr), "{%s}", keyid);
	const char *p[] = {repo, key_role, arr};
	int error;
	if ((error = db_exec(NULL, c, &st_key_retire_others, p, err)) ||
	    (error = publish_root(c, s, repo, root, err)) || (error = republish(c, s, repo, err)))
		return error;
	*out = json_pack("{s:s,s:s,s:i,s:b}", "role", role, "keyid", keyid, "root_version", root->version + 1,
			 "pending", 0);
	gn_log(GN_LOG_INFO, "event=tuf_key_rotated repo=%s role=%s keyid=%s root_version=%d", repo, key_role, keyid,
	       root->version + 1);
	return 0;
}

/* Maps the role a rotation names to the repository and the role its key has there: targets,
 * snapshot and timestamp are the image repository's; "director" is the director's targets key,
 * "director-snapshot" and "director-timestamp" its other online keys. */
static int rotation_role(const char **out_repo, const char **out_key_role, const char *role, gn_err *err)
{
	if (strcmp(role, "director") == 0) {
		*out_repo = "director";
		*out_key_role = "targets";
		return 0;
	}
	if (strcmp(role, "director-snapshot") == 0 || strcmp(role, "director-timestamp") == 0) {
		*out_repo = "director";
		*out_key_role = role + strlen("director-");
		return 0;
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(online_roles); i++) {
		if (strcmp(role, online_roles[i]) == 0) {
			*out_repo = "image";
			*out_key_role = online_roles[i];
			return 0;
		}
	}
	return gn_err_set(
		err, GN_EINVAL,
		"role must be targets, snapshot, timestamp (the image repository's online keys), director, "
		"director-snapshot or director-timestamp (the director's: targets, snapshot, timestamp); root "
		"keys change through an offline-signed root");
}

int tuf_keys_rotate(json_t **out, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
		    const char *role, gn_err *err)
{
	struct tuf_latest root;
	gn_ed25519_key *k = NULL;
	const char *repo = NULL, *key_role = NULL;
	char keyid[65];
	int error;
	*out = NULL;
	memset(&root, 0, sizeof(root));
	if ((error = rotation_role(&repo, &key_role, role, err)) || (error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = tuf_sign_latest(&root, c, repo, "root", err)) ||
	    (error = gn_ed25519_generate(&k, err)) || (error = insert_key(keyid, c, repo, key_role, k, true, err)))
		goto out;
	if ((json_int_t)root_keys_here(s, repo, &root) < tuf_sign_root_threshold(&root))
		error = rotate_pending(out, c, repo, role, key_role, keyid, err);
	else
		error = rotate_now(out, c, s, repo, role, key_role, keyid, &root, err);
	if (!error && !(error = audit_write(c, who, "tuf.key_rotate", "tuf_key", keyid,
					    json_pack("{s:s,s:s}", "role", role, "repo", repo), err)))
		error = db_tx_commit(c, err);
out:
	if (error) {
		db_tx_rollback(c);
		json_decref(*out);
		*out = NULL;
	}
	gn_ed25519_key_free(k);
	tuf_sign_latest_cleanup(&root);
	return error;
}

static int check_repo(const char *repo, gn_err *err)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(repos); i++)
		if (strcmp(repo, repos[i]) == 0)
			return 0;
	return gn_err_set(err, GN_EINVAL, "repository must be image or director");
}

int tuf_keys_root_draft(json_t **out, db_conn *c, const struct tuf_settings *s, const char *repo, gn_err *err)
{
	struct tuf_latest root;
	json_t *sp = NULL;
	int error;
	if ((error = check_repo(repo, err)))
		return error;
	if (!(error = tuf_sign_latest(&root, c, repo, "root", err)))
		error = build_root(&sp, c, s, &st_keys_draft, repo, root.version + 1, tuf_sign_root_threshold(&root),
				   err);
	if (!error)
		*out = json_pack("{s:o,s:[]}", "signed", sp, "signatures");
	tuf_sign_latest_cleanup(&root);
	return error;
}

/* --- import of a root signed offline ---------------------------------------------------------- */

static const json_t *role_keyids(const json_t *sp, const char *role)
{
	return json_object_get(json_object_get(json_object_get(sp, "roles"), role), "keyids");
}

static bool same_keyids(const json_t *a, const json_t *b, const char *role)
{
	const json_t *ka = role_keyids(a, role), *kb = role_keyids(b, role);
	return ka && kb && json_equal((json_t *)ka, (json_t *)kb);
}

/* True when every key id of role is listed in a's "keys" exactly as in b's: the same public key. */
static bool same_keys(const json_t *a, const json_t *b, const char *role)
{
	size_t i;
	json_t *id;
	json_array_foreach(role_keyids(a, role), i, id) {
		const json_t *ka = json_object_get(json_object_get(a, "keys"), json_string_value(id));
		const json_t *kb = json_object_get(json_object_get(b, "keys"), json_string_value(id));
		if (!ka || !kb || !json_equal((json_t *)ka, (json_t *)kb))
			return false;
	}
	return true;
}

/* Checks the roles of a new root of repo: only the roles repo has, each with key ids that the
 * root's "keys" define, none twice, and a threshold from 1 to its number of keys. */
static int check_root_roles(const json_t *sp, const char *repo, gn_err *err)
{
	const char *name;
	json_t *v;
	json_object_foreach(json_object_get(sp, "roles"), name, v) {
		bool known = false;
		for (size_t i = 0; i < repo_nroles(repo); i++)
			known = known || strcmp(name, all_roles[i]) == 0;
		if (!known)
			return gn_err_set(err, GN_EINVAL, "root lists a role '%s' that the %s repository does not have",
					  name, repo);
	}
	for (size_t i = 0; i < repo_nroles(repo); i++) {
		const json_t *role = json_object_get(json_object_get(sp, "roles"), all_roles[i]);
		const json_t *ids = json_object_get(role, "keyids");
		json_int_t t = json_integer_value(json_object_get(role, "threshold"));
		size_t nk = json_array_size(ids);
		for (size_t a = 0; a < nk; a++) {
			if (!json_object_get(json_object_get(sp, "keys"), json_string_value(json_array_get(ids, a))))
				return gn_err_set(err, GN_EINVAL, "root role %s names a key id that 'keys' lacks",
						  all_roles[i]);
			for (size_t b = a + 1; b < nk; b++)
				if (json_equal(json_array_get(ids, a), json_array_get(ids, b)))
					return gn_err_set(err, GN_EINVAL, "root role %s lists a key id twice",
							  all_roles[i]);
		}
		if (!json_is_integer(json_object_get(role, "threshold")) || t < 1 || (size_t)t > nk)
			return gn_err_set(err, GN_EINVAL, "root role %s needs a threshold from 1 to its %zu key(s)",
					  all_roles[i], nk);
	}
	return 0;
}

/* Checks what any root must be to follow the current one (version cur_version) and to keep the
 * repository working for TUF clients, however well signed; *out_expires is its expiry. */
static int check_root_shape(int64_t *out_expires, const json_t *sp, const char *repo, int cur_version, gn_err *err)
{
	const char *type = json_string_value(json_object_get(sp, "_type"));
	const char *spec = json_string_value(json_object_get(sp, "spec_version"));
	if (!json_is_object(sp) || !type || strcmp(type, "root") != 0)
		return gn_err_set(err, GN_EINVAL, "not root metadata");
	if (json_integer_value(json_object_get(sp, "version")) != cur_version + 1)
		return gn_err_set(err, GN_EINVAL, "root version must be %d (the current %s root is %d)",
				  cur_version + 1, repo, cur_version);
	if (gn_tuf_time_parse(out_expires, json_string_value(json_object_get(sp, "expires"))) ||
	    *out_expires <= gn_now())
		return gn_err_set(err, GN_EINVAL, "root 'expires' is missing, malformed or in the past");
	if (!spec || strncmp(spec, "1.", 2) != 0)
		return gn_err_set(err, GN_EINVAL, "root spec_version must be 1.x (TUF 1.0)");
	if (!json_is_true(json_object_get(sp, "consistent_snapshot")))
		return gn_err_set(err, GN_EINVAL,
				  "root must keep consistent_snapshot true: the repository serves N.ROLE.json files");
	return check_root_roles(sp, repo, err);
}

/* Online roles must list the keys the server signs with: the current ones, or a pending
 * rotation's (as the draft shows them), with the same public keys and the current thresholds. */
static int check_online_roles(db_conn *c, const struct tuf_settings *s, const char *repo, const json_t *sp,
			      const json_t *cur_signed, int cur_version, bool offline_targets, gn_err *err)
{
	json_t *draft = NULL;
	int error = build_root(&draft, c, s, &st_keys_draft, repo, cur_version + 1, 1, err);
	for (size_t i = 0; i < repo_nonline(repo) && !error; i++) {
		const char *role = online_roles[i];
		/* The image repository's targets keys may be any: keys this server does not hold take
		 * the top-level targets offline (tuf_deleg.h). */
		if (offline_targets && strcmp(repo, "image") == 0 && strcmp(role, "targets") == 0)
			continue;
		const json_t *nr = json_object_get(json_object_get(sp, "roles"), role);
		const json_t *cr = json_object_get(json_object_get(cur_signed, "roles"), role);
		/* A role the current root lacks (a director root of two roles): the draft's keys, threshold 1. */
		const json_t *cur = cr ? cur_signed : draft;
		if (!cr)
			cr = json_object_get(json_object_get(draft, "roles"), role);
		if (!json_equal(json_object_get(nr, "threshold"), json_object_get(cr, "threshold")))
			error = gn_err_set(err, GN_EINVAL, "the %s role's threshold differs from the current root's",
					   role);
		else if (!(same_keyids(sp, cur, role) && same_keys(sp, cur, role)) &&
			 !(same_keyids(sp, draft, role) && same_keys(sp, draft, role)))
			error = gn_err_set(
				err, GN_EINVAL,
				"the %s role's keys are neither the current ones nor a pending rotation's; rotate "
				"online keys with POST /v1/keys/rotate, then export the draft (or, for the image "
				"repository's targets, take them offline with ?offline_targets=true)",
				role);
	}
	json_decref(draft);
	return error;
}

/* TUF's rule for a new root: signed by a threshold of the old root's keys and of its own. */
static int check_root_signatures(const json_t *env, const json_t *cur_signed, gn_err *err)
{
	int error = gn_tuf_verify_role(env, cur_signed, "root", err);
	if (!error)
		error = gn_tuf_verify_role(env, json_object_get(env, "signed"), "root", err);
	if (error == GN_EAUTH) {
		error = GN_EINVAL;
		if (err)
			err->code = error;
	}
	return error;
}

/* Records the keys of role that the new root of repo names (those new here without a private
 * key) and retires the others. */
static int record_role_keys(db_conn *c, const char *repo, const json_t *sp, const char *role, gn_err *err)
{
	gn_buf arr;
	size_t i;
	json_t *id;
	int error = 0;
	gn_buf_init(&arr);
	gn_buf_puts(&arr, "{");
	json_array_foreach(role_keyids(sp, role), i, id) {
		const json_t *key = json_object_get(json_object_get(sp, "keys"), json_string_value(id));
		const char *pub = json_string_value(json_object_get(json_object_get(key, "keyval"), "public"));
		const char *p[] = {json_string_value(id), repo, role, pub ? pub : "", NULL};
		if (!error)
			error = db_exec(NULL, c, &st_key_insert, p, err);
		gn_buf_printf(&arr, "%s%s", i ? "," : "", json_string_value(id));
	}
	gn_buf_puts(&arr, "}");
	const char *pr[] = {repo, role, arr.data};
	if (!error)
		error = db_exec(NULL, c, &st_key_retire_others, pr, err);
	gn_buf_cleanup(&arr);
	return error;
}

/* Stores the imported root as it was signed; keys it brings in from a pending rotation sign from
 * now on (the image repository's over fresh targets, snapshot and timestamp; the director's over
 * each device's targets, signed anew). */
static int store_root(db_conn *c, const struct tuf_settings *s, const char *repo, const json_t *env,
		      const json_t *cur_signed, int version, int64_t expires, gn_err *err)
{
	const json_t *sp = json_object_get(env, "signed");
	char *body = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
	int error = tuf_sign_put(c, repo, "root", version, body, expires, err);
	free(body);
	bool rotated = false;
	for (size_t r = 0; !error && r < repo_nonline(repo); r++) {
		if (same_keyids(sp, cur_signed, online_roles[r]))
			continue;
		const char *pa[] = {repo, online_roles[r]};
		error = db_exec(NULL, c, &st_key_activate_pending, pa, err);
		rotated = true;
	}
	/* Targets keys that are neither the current nor a pending one are offline keys. */
	if (!error && strcmp(repo, "image") == 0)
		error = record_role_keys(c, repo, sp, "targets", err);
	if (!error && rotated)
		error = republish(c, s, repo, err);
	if (!error)
		gn_log(GN_LOG_INFO, "event=tuf_root_imported repo=%s version=%d rotated_online_keys=%s", repo, version,
		       rotated ? "yes" : "no");
	return error;
}

int tuf_keys_root_import(int *out_version, db_conn *c, const struct tuf_settings *s, const struct gd_actor *who,
			 const char *repo, const json_t *env, bool offline_targets, gn_err *err)
{
	struct tuf_latest cur;
	char ver[16];
	int64_t exp;
	int error;
	memset(&cur, 0, sizeof(cur));
	const json_t *sp = json_object_get(env, "signed");
	if ((error = check_repo(repo, err)) || (error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact(c, DB_LOCK_TUF, err)) || (error = tuf_sign_latest(&cur, c, repo, "root", err)))
		goto out;
	const json_t *cur_signed = json_object_get(cur.env, "signed");
	snprintf(ver, sizeof(ver), "%d", cur.version + 1);
	if ((error = check_root_shape(&exp, sp, repo, cur.version, err)) ||
	    (error = check_online_roles(c, s, repo, sp, cur_signed, cur.version, offline_targets, err)) ||
	    (error = check_root_signatures(env, cur_signed, err)) ||
	    (error = record_role_keys(c, repo, sp, "root", err)) ||
	    (error = store_root(c, s, repo, env, cur_signed, cur.version + 1, exp, err)) ||
	    (error = audit_write(c, who, "tuf.root_import", "tuf_root", ver, json_pack("{s:s}", "repo", repo), err)) ||
	    (error = db_tx_commit(c, err)))
		goto out;
	*out_version = cur.version + 1;
out:
	if (error)
		db_tx_rollback(c);
	tuf_sign_latest_cleanup(&cur);
	return error;
}
