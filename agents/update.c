/* One check-in and the updates it may bring: verify the director's and the image repository's
 * metadata (lib/tufclient.c; the limits are in docs/DESIGN.md), then for each model the director
 * names (a device runs several, one version each): download the named artifact, read it once and
 * check those bytes, load the same bytes beside the version that serves, self-test it, swap. A
 * model the director no longer names is unloaded. Every failure on the way leaves what serves as
 * it was, is reported, and is tried again later with exponential backoff (see retry_delay). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "json.h"
#include "log.h"
#include "model.h"
#include "npy.h"
#include "requirements.h"
#include "tuf.h"
#include "tufclient.h"
#include "tufdeleg.h"

/* A target that failed for reasons of its own (bytes that do not match what is signed, a runtime
 * that cannot load it, a failed self-test) is tried this many times in all, backoff-max apart,
 * then held until the director names another target for the model. */
#define TRIES_FOR_GOOD 3

/* The key under which a director target's failure is remembered (agent_slot.held, try_key). */
static void failure_key(char *out, size_t n, const json_t *entry)
{
	const char *sha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
	const char *at = gn_json_str(json_object_get(entry, "custom"), "assigned_at");
	snprintf(out, n, "%s %s", sha ? sha : "", at ? at : "");
}

/* Keeps the last update attempt, and the last failed one, for `ganglion-agent status` (another
 * process); a lost write only costs that. */
static void record_operation(struct agent *a, const char *text, bool failed)
{
	gn_err err;
	if (state_write_bytes(a, "last_operation.json", text, strlen(text), &err) ||
	    (failed && state_write_bytes(a, "last_failure.json", text, strlen(text), &err)))
		gn_log(GN_LOG_WARN, "event=operation_not_recorded msg=\"%s\"", err.msg);
}

/* True when the operations agree on what an event is made of (their times aside). */
static bool same_op(const json_t *x, const json_t *y)
{
	static const char *const keys[] = {"state", "model", "version", "detail", "attempts"};
	if (!x || !y)
		return false;
	for (size_t i = 0; i < GN_ARRAY_LEN(keys); i++) {
		const json_t *u = json_object_get(x, keys[i]), *v = json_object_get(y, keys[i]);
		if (!json_equal(u, v) && (u || v))
			return false;
	}
	return true;
}

/* Records an operation as the device's last and, when s is given, as its model's last: with the
 * attempt it belongs to and, for a failure tried again later, when. */
static void report(struct agent *a, struct agent_slot *s, const char *state, const char *model, const char *version,
		   const char *detail)
{
	char at[21];
	gn_tuf_time(at, gn_now());
	json_t *op = json_pack("{s:s,s:s,s:s,s:s}", "state", state, "model", model ? model : "", "version",
			       version ? version : "", "at", at);
	if (detail)
		json_object_set_new(op, "detail", json_string(detail));
	if (s && s->attempts > 0)
		json_object_set_new(op, "attempts", json_integer(s->attempts));
	if (s && s->retry_at && strcmp(state, "failed") == 0) {
		gn_tuf_time(at, s->retry_at);
		json_object_set_new(op, "retry_at", json_string(at));
	}
	pthread_mutex_lock(&a->lock);
	/* The same outcome again (metadata refused at every check-in) is one event, not one per poll. */
	bool same = same_op(a->last_op, op);
	if (s) {
		json_decref(s->last_op);
		s->last_op = json_incref(op);
	}
	if (!same) {
		json_decref(a->last_op);
		a->last_op = json_incref(op);
	}
	char *text = same ? NULL : json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
	pthread_mutex_unlock(&a->lock);
	json_decref(op);
	if (same)
		return;
	record_operation(a, text, strcmp(state, "failed") == 0);
	free(text);
	enum gn_log_level lvl = strcmp(state, "failed") == 0 ? GN_LOG_WARN : GN_LOG_INFO;
	gn_log(lvl, "event=update state=%s model=%s version=%s attempts=%d detail=\"%s\"", state,
	       model && *model ? model : "-", version && *version ? version : "-", s ? s->attempts : 0,
	       detail ? detail : "");
}

void update_report(struct agent *a, const char *state, const char *model, const char *version, const char *detail)
{
	report(a, model ? models_slot(a, model, false) : NULL, state, model, version, detail);
}

/* Sends the last operation now (best effort), so a long download or load shows on the server,
 * and each model's outcome becomes an event of its own when several install in one go. */
static void push_progress(struct agent *a)
{
	json_t *ignored = NULL;
	bool unchanged;
	gn_err err;
	if (client_checkin(&ignored, &unchanged, a, true, &err))
		gn_log(GN_LOG_DEBUG, "event=progress_not_reported msg=\"%s\"", err.msg);
	json_decref(ignored);
}

/* Deletes the entries of the data dir's sub (models/, downloads/) whose first 64 characters are
 * none of keep's: digests, or "DIGEST.part" for partial downloads. */
static void prune_dir(struct agent *a, const char *sub, const char *const *keep, size_t nkeep)
{
	char *dir = state_path(a, sub);
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		bool kept = false;
		if (e->d_name[0] == '.' || strlen(e->d_name) < 64)
			continue;
		for (size_t i = 0; i < nkeep && !kept; i++)
			kept = keep[i] && strncmp(e->d_name, keep[i], 64) == 0;
		if (kept)
			continue;
		char *p = gn_asprintf("%s/%s", dir, e->d_name);
		unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	free(dir);
}

/* True when some model's current or previous version has the digest sha (the caller holds
 * update_lock). */
static bool digest_in_use(struct agent *a, const char *sha)
{
	bool used = false;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots && !used; i++) {
		const struct agent_slot *s = a->slots[i];
		used = (s->current && strcmp(s->current->sha256, sha) == 0) ||
		       (s->previous && gn_json_str(s->previous, "sha256") &&
			strcmp(gn_json_str(s->previous, "sha256"), sha) == 0);
	}
	pthread_mutex_unlock(&a->lock);
	return used;
}

/* Deletes the model files that no model's current or previous version uses (the caller holds
 * update_lock). */
static void prune_models(struct agent *a)
{
	pthread_mutex_lock(&a->lock);
	size_t n = 0;
	char(*keep)[65] = gn_calloc(2 * a->nslots + 1, sizeof(*keep));
	const char **ptrs = gn_calloc(2 * a->nslots + 1, sizeof(*ptrs));
	for (size_t i = 0; i < a->nslots; i++) {
		const struct agent_slot *s = a->slots[i];
		const char *prev = s->previous ? gn_json_str(s->previous, "sha256") : NULL;
		if (s->current)
			snprintf(keep[n++], 65, "%s", s->current->sha256);
		if (prev)
			snprintf(keep[n++], 65, "%s", prev);
	}
	pthread_mutex_unlock(&a->lock);
	for (size_t i = 0; i < n; i++)
		ptrs[i] = keep[i];
	prune_dir(a, "models", ptrs, n);
	free(ptrs);
	free(keep);
}

/* TUF 5.3.11: when the timestamp or snapshot keys change from old to next (root signed parts),
 * forget the versions they vouched for, so that a rotation undoes a fast-forward made with a
 * stolen key; when the targets keys change, forget the trusted targets. */
static void forget_rotated(struct agent *a, const char *repo, const json_t *old, const json_t *next)
{
	static const char *const guarded[] = {"timestamp", "snapshot", "targets"};
	for (size_t g = 0; g < GN_ARRAY_LEN(guarded); g++) {
		const json_t *ok = json_object_get(json_object_get(old, "roles"), guarded[g]);
		const json_t *nk = json_object_get(json_object_get(next, "roles"), guarded[g]);
		if (json_equal(json_object_get(ok, "keyids"), json_object_get(nk, "keyids")))
			continue;
		/* targets: its copy; timestamp or snapshot: both, as the chain restarts from them. */
		const char *drop[2] = {guarded[g], strcmp(guarded[g], "targets") == 0     ? NULL
						   : strcmp(guarded[g], "timestamp") == 0 ? "snapshot"
											  : "timestamp"};
		for (int k = 0; k < 2 && drop[k]; k++) {
			char *gp = gn_asprintf("%s/trust/%s/%s.json", a->cfg.data_dir, repo, drop[k]);
			unlink(gp);
			free(gp);
		}
	}
}

/* Fetches and checks the root version that follows root (trusted), and stores it once it is
 * trusted. GN_ENOTFOUND when the repository has no such version: the chain ends at root. */
static int next_root(json_t **out, struct agent *a, const char *repo, const json_t *root, gn_err *err)
{
	char rel[64], path[96], *bytes = NULL;
	size_t len;
	json_t *next = NULL;
	json_int_t v = json_integer_value(json_object_get(json_object_get(root, "signed"), "version"));
	snprintf(rel, sizeof(rel), "trust/%s/root.json", repo);
	snprintf(path, sizeof(path), "/v1/tuf/%s/%lld.root.json", repo, (long long)v + 1);
	int rc = client_get(&bytes, &len, a, path, GN_TUF_MAX_ROOT_BYTES, err);
	if (!rc)
		rc = gn_tufc_parse(&next, bytes, len, err);
	if (!rc)
		rc = gn_tufc_root_update(root, next, err);
	if (!rc)
		rc = state_write_bytes(a, rel, bytes, len, err);
	free(bytes);
	if (rc) {
		json_decref(next);
		return rc;
	}
	gn_log(GN_LOG_INFO, "event=root_updated repo=%s version=%lld", repo, (long long)v + 1);
	forget_rotated(a, repo, json_object_get(root, "signed"), json_object_get(next, "signed"));
	*out = next;
	return 0;
}

/* Called after GN_TUF_MAX_ROOT_ROTATIONS versions: 0 when root is the newest, GN_EAUTH when the
 * chain goes on (its next version is not fetched past the check that it exists). */
static int chain_ends(struct agent *a, const char *repo, const json_t *root, gn_err *err)
{
	char path[96], *bytes = NULL;
	size_t len;
	json_int_t v = json_integer_value(json_object_get(json_object_get(root, "signed"), "version"));
	snprintf(path, sizeof(path), "/v1/tuf/%s/%lld.root.json", repo, (long long)v + 1);
	int rc = client_get(&bytes, &len, a, path, GN_TUF_MAX_ROOT_BYTES, err);
	free(bytes);
	if (rc == GN_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	return gn_err_set(err, GN_EAUTH,
			  "more than %d root rotations in one refresh (root version %lld has a successor still); "
			  "the chain is not followed further now",
			  GN_TUF_MAX_ROOT_ROTATIONS, (long long)v);
}

/* Follows a repository's root chain from the trusted root to the newest one, at most
 * GN_TUF_MAX_ROOT_ROTATIONS versions in one refresh: a chain that goes on past that fails the
 * refresh (each root on the way was checked and stays trusted; the next refresh goes on). */
static int refresh_root(json_t **out, struct agent *a, const char *repo, gn_err *err)
{
	char rel[64];
	json_t *root = NULL, *next = NULL;
	snprintf(rel, sizeof(rel), "trust/%s/root.json", repo);
	int rc = state_read_json(&root, a, rel, err);
	for (int hops = 0; !rc; hops++) {
		if (hops == GN_TUF_MAX_ROOT_ROTATIONS) {
			rc = chain_ends(a, repo, root, err);
			break;
		}
		if ((rc = next_root(&next, a, repo, root, err)) == GN_ENOTFOUND) {
			rc = 0;
			break;
		}
		if (!rc) {
			json_decref(root);
			root = next;
		}
	}
	if (!rc)
		rc = gn_tufc_check_fresh(root, state_now(a), err);
	if (rc) {
		json_decref(root);
		return rc;
	}
	*out = root;
	return 0;
}

/* Metadata fetched and checked, kept in memory until the whole update has been checked. */
struct fetched {
	json_t *env;
	char *bytes;
	size_t len;
};

static void fetched_cleanup(struct fetched *f)
{
	json_decref(f->env);
	free(f->bytes);
	memset(f, 0, sizeof(*f));
}

/* Fetches path (at most max bytes) and checks it as `role` against root and the trusted copy.
 * Stores nothing: the caller does, once every check of the update has passed. */
static int fetch_role(struct fetched *out, struct agent *a, const json_t *root, const char *repo, const char *role,
		      const char *path, size_t max, gn_err *err)
{
	char rel[64];
	json_t *trusted = NULL;
	snprintf(rel, sizeof(rel), "trust/%s/%s.json", repo, role);
	int rc = client_get(&out->bytes, &out->len, a, path, max, err);
	if (!rc)
		rc = gn_tufc_parse(&out->env, out->bytes, out->len, err);
	/* No trusted copy yet is fine; one we cannot read is not (the rollback check needs it). */
	if (!rc && (rc = state_read_json(&trusted, a, rel, err)) == GN_ENOTFOUND) {
		trusted = NULL;
		rc = 0;
	}
	if (!rc)
		rc = gn_tufc_check_role(root, role, out->env, trusted, state_now(a), err);
	json_decref(trusted);
	if (rc)
		fetched_cleanup(out);
	return rc;
}

/* The version that listing (a timestamp or snapshot envelope) gives for file. */
static json_int_t listed_version(const json_t *listing, const char *file)
{
	return json_integer_value(json_object_get(
		json_object_get(json_object_get(json_object_get(listing, "signed"), "meta"), file), "version"));
}

/* Stores a repository's timestamp, snapshot and targets as the trusted copies. */
static int store_chain(struct agent *a, const char *repo, const struct fetched *ts, const struct fetched *sn,
		       const struct fetched *tg, gn_err *err)
{
	char rel[64];
	snprintf(rel, sizeof(rel), "trust/%s/targets.json", repo);
	int rc = state_write_bytes(a, rel, tg->bytes, tg->len, err);
	snprintf(rel, sizeof(rel), "trust/%s/snapshot.json", repo);
	if (!rc)
		rc = state_write_bytes(a, rel, sn->bytes, sn->len, err);
	snprintf(rel, sizeof(rel), "trust/%s/timestamp.json", repo);
	if (!rc)
		rc = state_write_bytes(a, rel, ts->bytes, ts->len, err);
	return rc;
}

/* Fetches a repository's timestamp, snapshot and targets under root (trusted), each checked on
 * its own and against the metadata that lists it (versions, lengths, hashes). Stores nothing. */
static int fetch_chain(struct fetched *ts, struct fetched *sn, struct fetched *tg, struct agent *a, const json_t *root,
		       const char *repo, gn_err *err)
{
	char path[96];
	int rc;
	snprintf(path, sizeof(path), "/v1/tuf/%s/timestamp.json", repo);
	if ((rc = fetch_role(ts, a, root, repo, "timestamp", path, GN_TUF_MAX_TIMESTAMP_BYTES, err)))
		return rc;
	snprintf(path, sizeof(path), "/v1/tuf/%s/%lld.snapshot.json", repo,
		 (long long)listed_version(ts->env, "snapshot.json"));
	if ((rc = fetch_role(sn, a, root, repo, "snapshot", path,
			     gn_tufc_fetch_limit(ts->env, "snapshot.json", GN_TUF_MAX_SNAPSHOT_BYTES), err)) ||
	    (rc = gn_tufc_meta_matches(ts->env, "snapshot.json", sn->env, sn->bytes, sn->len, err)))
		return rc;
	snprintf(path, sizeof(path), "/v1/tuf/%s/%lld.targets.json", repo,
		 (long long)listed_version(sn->env, "targets.json"));
	if ((rc = fetch_role(tg, a, root, repo, "targets", path,
			     gn_tufc_fetch_limit(sn->env, "targets.json", GN_TUF_MAX_TARGETS_BYTES), err)))
		return rc;
	return gn_tufc_meta_matches(sn->env, "targets.json", tg->env, tg->bytes, tg->len, err);
}

/* The image repository as one refresh found it: the top-level targets and the snapshot, and the
 * delegated targets roles loaded on demand as targets are looked up through delegations. */
struct image {
	json_t *targets, *snapshot;
	struct gn_tufd_walk walk;
};

static void image_free(struct image *im)
{
	if (!im)
		return;
	gn_tufd_walk_cleanup(&im->walk);
	json_decref(im->targets);
	json_decref(im->snapshot);
	free(im);
}

static char *delegated_rel(const char *role)
{
	return gn_asprintf("trust/image/delegated/%s.json", role);
}

/* gn_tufd_fetch_fn: the delegated role's metadata at version (the server keeps every version). */
static int delegated_fetch(void *ctx, char **out, size_t *out_len, const char *role, long long version, size_t max,
			   gn_err *err)
{
	char *path = gn_asprintf("/v1/tuf/image/%lld.%s.json", version, role);
	int rc = client_get(out, out_len, ctx, path, max, err);
	free(path);
	return rc;
}

/* gn_tufd_trusted_fn: the copy of the delegated role trusted last. */
static int delegated_trusted(void *ctx, json_t **out, const char *role, gn_err *err)
{
	char *rel = delegated_rel(role);
	int rc = state_read_json(out, ctx, rel, err);
	free(rel);
	return rc;
}

/* Finds the image repository's entry for path through its delegations (TUF 5.6.7) into *out
 * (borrowed from im), and stores the delegated roles that were verified on the way as the trusted
 * copies. */
static int image_lookup(const json_t **out, struct agent *a, struct image *im, const char *path, gn_err *err)
{
	const char *role;
	json_t *env;
	int rc = gn_tufd_find_target(out, &im->walk, path, err);
	if (rc && rc != GN_ENOTFOUND)
		return rc;
	json_object_foreach(im->walk.loaded, role, env) {
		char *rel = delegated_rel(role);
		gn_err e2;
		if (state_write_json(a, rel, env, &e2))
			gn_log(GN_LOG_WARN, "event=delegated_not_saved role=%s msg=\"%s\"", role, e2.msg);
		free(rel);
	}
	if (rc)
		return gn_err_set(err, GN_EAUTH, "the image repository has not signed target %s", path);
	return 0;
}

/* Brings the image repository up to date: root chain, timestamp, snapshot, targets. Timestamp,
 * snapshot and targets become trusted together, once each has passed its own checks and they
 * agree with each other (versions, lengths, hashes): a later update is never checked against
 * metadata that failed. Delegated targets roles are fetched later, as a target needs them. */
static int refresh_image(struct image **out, struct agent *a, gn_err *err)
{
	json_t *root = NULL;
	struct fetched ts = {0}, sn = {0}, tg = {0};
	int rc;
	if ((rc = refresh_root(&root, a, "image", err)) || (rc = fetch_chain(&ts, &sn, &tg, a, root, "image", err)) ||
	    (rc = store_chain(a, "image", &ts, &sn, &tg, err)))
		goto out;
	struct image *im = gn_calloc(1, sizeof(*im));
	im->targets = tg.env;
	im->snapshot = sn.env;
	tg.env = sn.env = NULL;
	im->walk = (struct gn_tufd_walk){.targets = im->targets,
					 .snapshot = im->snapshot,
					 .now = state_now(a),
					 .fetch = delegated_fetch,
					 .trusted = delegated_trusted,
					 .ctx = a};
	*out = im;
out:
	json_decref(root);
	fetched_cleanup(&ts);
	fetched_cleanup(&sn);
	fetched_cleanup(&tg);
	return rc;
}

/* Raises the clock floor to the director's issued_at, with care: a stolen online key could sign a
 * time in the far future and freeze the device for good. Never past the metadata's own expiry,
 * and while the system clock is not behind the floor, not past it by more than a day. */
static void director_clock(struct agent *a, const json_t *dt)
{
	const json_t *custom = json_object_get(json_object_get(dt, "signed"), "custom");
	int64_t issued, exp = 0, now = gn_now();
	if (gn_tuf_time_parse(&issued, gn_json_str(custom, "issued_at")) != 0)
		return;
	if (gn_tuf_time_parse(&exp, gn_json_str(json_object_get(dt, "signed"), "expires")) == 0 && issued <= exp &&
	    (now < a->clock_floor || issued <= now + 86400))
		state_clock_seen(a, issued);
	else
		gn_log(GN_LOG_WARN, "event=issued_at_ignored issued_at=%s", gn_json_str(custom, "issued_at"));
}

/* Checks targets from a director whose root lists only root and targets (before it was a full
 * repository): the copy the check-in answer carries, against the trusted one. */
static int check_director_targets_only(struct agent *a, const json_t *root, const json_t *dt, gn_err *err)
{
	json_t *trusted = NULL;
	int rc = state_read_json(&trusted, a, "trust/director/targets.json", err);
	if (rc == GN_ENOTFOUND) {
		trusted = NULL;
		rc = 0;
	}
	if (!rc)
		rc = gn_tufc_check_role(root, "targets", dt, trusted, state_now(a), err);
	json_decref(trusted);
	return rc;
}

/* Brings the director up to date and returns its verified targets (new): the device's own
 * timestamp, snapshot and targets, checked as the image repository's are, when the director root
 * lists those roles; else the targets the check-in answer dt carries. They must name this device. */
static int check_director(json_t **out, struct agent *a, const json_t *dt, gn_err *err)
{
	json_t *root = NULL;
	struct fetched ts = {0}, sn = {0}, tg = {0};
	int rc = refresh_root(&root, a, "director", err);
	if (rc)
		return rc;
	bool full = json_object_get(json_object_get(json_object_get(root, "signed"), "roles"), "timestamp") != NULL;
	if (full && !(rc = fetch_chain(&ts, &sn, &tg, a, root, "director", err)))
		dt = tg.env;
	else if (!full)
		rc = check_director_targets_only(a, root, dt, err);
	if (rc)
		goto out;
	const char *id = gn_json_str(json_object_get(json_object_get(dt, "signed"), "custom"), "device_id");
	if (!id || strcmp(id, a->device_id) != 0) {
		rc = gn_err_set(err, GN_EAUTH, "director metadata is for device %s, not this one", id ? id : "(none)");
		goto out;
	}
	if ((rc = full ? store_chain(a, "director", &ts, &sn, &tg, err)
		       : state_write_json(a, "trust/director/targets.json", dt, err)))
		goto out;
	director_clock(a, dt);
	*out = json_incref((json_t *)dt);
out:
	json_decref(root);
	fetched_cleanup(&ts);
	fetched_cleanup(&sn);
	fetched_cleanup(&tg);
	return rc;
}

/* Removes models/SHA256, a file that failed to load or to self-test, as a failed download is
 * removed; never a file that a model's current or previous version uses. */
static void drop_model_file(struct agent *a, const char *file, const char *sha)
{
	if (!digest_in_use(a, sha) && unlink(file) == 0)
		gn_log(GN_LOG_INFO, "event=model_file_removed sha256=%s", sha);
}

/* Reads the stored file once and checks those bytes against the target's SHA-256, then against
 * every hash both signed entries list: these bytes, not the file, are what gets loaded.
 * *out_signed: the bytes hash to sha but not to something the metadata lists (not worth fetching
 * again), as opposed to a file that changed on disk. */
static int read_verified(struct models_file *out, bool *out_signed, const json_t *image_entry, const json_t *entry,
			 const char *path, const char *file, const char *sha, gn_err *err)
{
	char sum[GN_SHA256_HEX_LEN + 1];
	int rc = models_file_load(out, file, err);
	*out_signed = false;
	if (rc)
		return rc;
	gn_sha256_hex(sum, out->data, out->len);
	if (strcmp(sum, sha) != 0)
		return gn_err_set(err, GN_EAUTH, "stored model file changed after verification");
	*out_signed = true;
	if ((rc = gn_tufc_target_bytes_ok(image_entry, path, out->data, out->len, err)) ||
	    (rc = gn_tufc_target_bytes_ok(entry, path, out->data, out->len, err)))
		return rc;
	*out_signed = false;
	return 0;
}

/* The largest sample tensor file the agent fetches (the signed sample states each one's length). */
#define SAMPLE_FILE_MAX ((size_t)1 << 30)

/* Reads one tensor of the sample: numbers in the JSON, or a .npy file named by its SHA-256 and
 * length (inside the signed sample), fetched from the artifact store and checked against them.
 * GN_EAUTH when the bytes are not the signed ones; GN_EINVAL when they are not a usable .npy. */
static int sample_tensor(struct models_tensor *t, struct agent *a, const char *name, const json_t *v, gn_err *err)
{
	const char *sha = gn_json_str(v, "sha256");
	json_int_t want = json_integer_value(json_object_get(v, "length"));
	char path[128], sum[GN_SHA256_HEX_LEN + 1], *bytes = NULL;
	size_t len = 0;
	gn_npy n;
	gn_err e;
	int rc;
	t->name = gn_strdup(name);
	if (json_is_array(v)) {
		t->n = json_array_size(v);
		t->data = gn_malloc((t->n + 1) * sizeof(double));
		for (size_t j = 0; j < t->n; j++)
			t->data[j] = json_number_value(json_array_get(v, j));
		return 0;
	}
	if (!sha || strlen(sha) != GN_SHA256_HEX_LEN || strspn(sha, "0123456789abcdef") != GN_SHA256_HEX_LEN ||
	    want < 1 || (uint64_t)want > SAMPLE_FILE_MAX)
		return gn_err_set(err, GN_EAUTH,
				  "the sample's tensor %s is neither numbers nor a .npy file of at most %zu "
				  "bytes named by its SHA-256",
				  name, SAMPLE_FILE_MAX);
	snprintf(path, sizeof(path), "/v1/artifacts/sha256/%s", sha);
	/* One byte more than stated: a longer file is then a mismatch, not a transport error. */
	if ((rc = client_get(&bytes, &len, a, path, (size_t)want + 1, &e)))
		return gn_err_set(err, rc == GN_ETOOBIG ? GN_EAUTH : rc, "sample file of %s: %s", name, e.msg);
	gn_sha256_hex(sum, bytes, len);
	if (len != (size_t)want || strcmp(sum, sha) != 0)
		rc = gn_err_set(err, GN_EAUTH,
				"the sample file of tensor %s does not match its signed SHA-256 (%zu bytes, sha256 %s)",
				name, len, sum);
	else if (gn_npy_parse(&n, bytes, len, len, &e))
		rc = gn_err_set(err, GN_EINVAL, "the sample file of tensor %s: %s", name, e.msg);
	if (!rc) {
		t->n = (size_t)n.count;
		t->data = gn_malloc((t->n + 1) * sizeof(double));
		for (size_t j = 0; j < t->n; j++)
			t->data[j] = gn_npy_get(&n, j);
	}
	free(bytes);
	return rc;
}

/* Decodes a checked sample's inputs and outputs into out. */
static int sample_decode(struct models_sample *out, struct agent *a, const json_t *sample, gn_err *err)
{
	const json_t *ins = json_object_get(sample, "inputs"), *outs = json_object_get(sample, "outputs");
	const json_t *tol = json_object_get(sample, "tolerance");
	const char *k;
	json_t *v;
	int rc = 0;
	out->tolerance = json_is_number(tol) ? json_number_value(tol) : 1e-4;
	out->in = gn_calloc(json_object_size(ins) + 1, sizeof(*out->in));
	out->out = gn_calloc(json_object_size(outs) + 1, sizeof(*out->out));
	json_object_foreach((json_t *)ins, k, v) {
		if ((rc = sample_tensor(&out->in[out->nin++], a, k, v, err)))
			return rc;
	}
	json_object_foreach((json_t *)outs, k, v) {
		if ((rc = sample_tensor(&out->out[out->nout++], a, k, v, err)))
			return rc;
	}
	return 0;
}

/* Fetches the release's sample, checks it against its signed SHA-256 and decodes it (its tensor
 * files fetched and checked against their digests in it); *out_has is false when the release has
 * none. GN_EAUTH when something does not match. */
static int fetch_sample(struct models_sample *out, bool *out_has, struct agent *a, const json_t *icustom,
			const char *model, const char *version, gn_err *err)
{
	const char *want = gn_json_str(icustom, "sample_sha256");
	char spath[256], ssum[GN_SHA256_HEX_LEN + 1], *bytes = NULL;
	size_t len = 0;
	json_t *sample = NULL;
	*out_has = false;
	if (!want)
		return 0;
	snprintf(spath, sizeof(spath), "/v1/models/%s/versions/%s/sample", model, version);
	int rc = client_get(&bytes, &len, a, spath, 64 << 20, err);
	if (rc)
		return rc;
	gn_sha256_hex(ssum, bytes, len);
	if (strcmp(ssum, want) != 0 || !(sample = json_loadb(bytes, len, 0, NULL)))
		rc = gn_err_set(err, GN_EAUTH, "the sample does not match its signed SHA-256");
	else if (!(rc = sample_decode(out, a, sample, err)))
		*out_has = true;
	free(bytes);
	json_decref(sample);
	return rc;
}

/* --- state.json -------------------------------------------------------------------------------- */

/* A version's record in state.json (new; json null for none). */
static json_t *record_of(const struct agent_model *m)
{
	if (!m)
		return json_null();
	return json_pack("{s:s,s:s,s:s,s:s}", "name", m->name, "version", m->version, "sha256", m->sha256, "self_test",
			 m->self_test);
}

/* Returns state.json's content (new) for the models as they are, except that model s (when given)
 * has m (may be NULL) as its current version and prev (borrowed, may be NULL) as its previous. */
static json_t *state_json(struct agent *a, const struct agent_slot *s, const struct agent_model *m, const json_t *prev)
{
	json_t *models = json_object();
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots; i++) {
		const struct agent_slot *x = a->slots[i];
		const struct agent_model *cur = x == s ? m : x->current;
		const json_t *pv = x == s ? prev : x->previous;
		if (!cur && !pv && !x->held[0])
			continue;
		json_object_set_new(
			models, x->name,
			json_pack("{s:o,s:O?,s:s}", "current", record_of(cur), "previous", pv, "held", x->held));
	}
	pthread_mutex_unlock(&a->lock);
	return json_pack("{s:i,s:o}", "format", 2, "models", models);
}

/* Writes state.json for the models as they are (see state_json). */
static int save_state(struct agent *a, const struct agent_slot *s, const struct agent_model *m, const json_t *prev,
		      gn_err *err)
{
	json_t *state = state_json(a, s, m, prev);
	int rc = state_write_json(a, "state.json", state, err);
	json_decref(state);
	return rc;
}

/* Makes m the version of model s that serves, recording it (and the one it replaces as the
 * previous) before the swap is visible. Takes over m's reference, also on failure. */
static int activate(struct agent *a, struct agent_slot *s, struct agent_model *m, json_t *paused_out, gn_err *err)
{
	struct agent_model *cur = paused_out ? NULL : models_get(a, s->name);
	/* After a pause swap, the version taken out is the one to keep for a rollback. */
	json_t *prev = paused_out ? json_incref(paused_out) : cur ? record_of(cur) : json_incref(s->previous);
	models_unref(a, cur);
	int rc = save_state(a, s, m, prev, err);
	if (rc) {
		models_unref(a, m);
		json_decref(prev);
		return rc;
	}
	models_swap(a, s, m);
	json_decref(s->previous);
	s->previous = prev;
	prune_models(a);
	return 0;
}

/* --- installing, with retries ------------------------------------------------------------------ */

/* Seconds to wait before the attempt that follows `attempts` failed ones: from poll-min, doubling
 * each time, at most backoff-max (a target's own failure: backoff-max); half of it fixed and half
 * at random ("equal jitter"), so that a fleet that failed together does not try again together. */
static int64_t retry_delay(const struct agent *a, int attempts, bool for_good)
{
	static unsigned seed; /* update_lock */
	int64_t base = a->cfg.poll_min;
	for (int i = 1; i < attempts && base < a->cfg.backoff_max; i++)
		base *= 2;
	if (for_good || base > a->cfg.backoff_max)
		base = a->cfg.backoff_max;
	if (!seed)
		seed = (unsigned)(gn_mono_ns() ^ (uint64_t)getpid()) | 1u;
	int64_t half = base / 2;
	return base - half + (half ? (int64_t)(rand_r(&seed) % (unsigned)(half + 1)) : 0);
}

/* Reports a failed attempt of s's target and decides what follows: another attempt after a delay,
 * or, for a target that failed for reasons of its own TRIES_FOR_GOOD times, none until the
 * director names another target. */
static void attempt_failed(struct agent *a, struct agent_slot *s, const char *model, const char *version,
			   const char *detail, bool for_good)
{
	s->try_for_good = for_good;
	if (for_good && s->attempts >= TRIES_FOR_GOOD) {
		snprintf(s->held, sizeof(s->held), "%s", s->try_key);
		s->retry_at = 0;
	} else {
		s->retry_at = gn_now() + retry_delay(a, s->attempts, for_good);
	}
	report(a, s, "failed", model, version, detail);
}

/* Checks the release's signed requirements against this device's facts before anything is
 * downloaded; a release it cannot run is a failed attempt of the target's own. A device that cannot
 * tell (its plugin could not be probed) tries: the load will say. */
static bool runnable_here(struct agent *a, struct agent_slot *s, const json_t *image_entry, const char *model,
			  const char *version)
{
	char why[512], detail[700];
	const json_t *req = json_object_get(json_object_get(image_entry, "custom"), "requirements");
	if (!json_is_object(req))
		return true;
	json_t *facts = facts_collect(a);
	enum gn_req_verdict v = gn_requirements_match(req, facts, why, sizeof(why));
	json_decref(facts);
	if (v != GN_REQ_REFUSED)
		return true;
	snprintf(detail, sizeof(detail), "this device cannot run %s %s, so it was not downloaded: %s", model, version,
		 why);
	gn_log(GN_LOG_WARN, "event=install_refused model=%s version=%s msg=\"%s\"", model, version, why);
	attempt_failed(a, s, model, version, detail, true);
	return false;
}

/* Free memory (MiB) on the target models load on, as the runtime reports it now (or as
 * test-free-memory-mb says); -1 when unknown. */
static int64_t target_free_mb(struct agent *a)
{
	ganglion_rt_caps caps;
	char ebuf[256];
	if (a->cfg.test_free_memory_mb >= 0)
		return a->cfg.test_free_memory_mb;
	if (!a->rt || a->rt->capabilities(&caps, ebuf, sizeof(ebuf)) != GANGLION_RT_OK)
		return -1;
	for (size_t i = 0; i < caps.n_targets && i < GANGLION_RT_MAX_TARGETS; i++)
		if (strcmp(caps.targets[i].name, a->cfg.runtime_target) == 0 && caps.targets[i].mem_available_bytes)
			return (int64_t)(caps.targets[i].mem_available_bytes / 1048576u);
	return -1;
}

static int load_record(struct agent_model **out, struct agent *a, const json_t *rec, gn_err *err);

/* Before a new version loads beside the one that serves: when the target's free memory is less
 * than the release's declared need (requirements.min_memory_mb), both would not fit, so the swap
 * pauses the model instead, announced in the log and in the reported operation: requests wait
 * (models_get), the old version is released, and the new one loads into its room. Returns the
 * record of the version taken out (new), or NULL when the swap goes side by side. */
static json_t *pause_if_no_room(struct agent *a, struct agent_slot *s, const json_t *image_entry, const char *model,
				const char *version)
{
	char note[300];
	const json_t *req = json_object_get(json_object_get(image_entry, "custom"), "requirements");
	int64_t need = json_integer_value(json_object_get(req, "min_memory_mb")), free_mb;
	struct agent_model *cur = need > 0 ? models_get(a, s->name) : NULL;
	if (!cur)
		return NULL;
	if ((free_mb = target_free_mb(a)) < 0 || free_mb >= need) {
		models_unref(a, cur);
		return NULL;
	}
	json_t *rec = record_of(cur);
	snprintf(note, sizeof(note),
		 "pause swap: %lld MiB free on %s, %s %s needs %lld MiB, so %s is unloaded first; requests wait",
		 (long long)free_mb, a->cfg.runtime_target, model, version, (long long)need, cur->version);
	gn_log(GN_LOG_WARN, "event=swap_pause model=%s from=%s to=%s free_mb=%lld need_mb=%lld", model, cur->version,
	       version, (long long)free_mb, (long long)need);
	models_unref(a, cur);
	report(a, s, "loading", model, version, note);
	push_progress(a);
	models_pause(a, s);
	return rec;
}

/* After a pause swap failed: the version taken out serves again (from its verified file), and the
 * requests that waited go on with it. */
static void restore_paused(struct agent *a, struct agent_slot *s, const json_t *rec)
{
	struct agent_model *m = NULL;
	gn_err err;
	if (load_record(&m, a, rec, &err))
		gn_log(GN_LOG_ERROR, "event=pause_restore_failed model=%s version=%s msg=\"%s\"",
		       gn_json_str(rec, "name"), gn_json_str(rec, "version"), err.msg);
	else
		models_swap(a, s, m);
	models_resume(a, s);
}

/* One attempt to verify, download, load, self-test and swap in the target at path for model s. */
static void install(struct agent *a, struct agent_slot *s, struct image *image, const char *path, const json_t *entry)
{
	gn_err err;
	char *file = NULL, key[96];
	struct models_sample sample = {0};
	bool has_sample = false;
	struct models_file bytes = {0};
	struct agent_model *m = NULL;
	json_t *paused_out = NULL; /* the record of the version a pause swap took out */
	bool signed_mismatch = false;
	const json_t *dcustom = json_object_get(entry, "custom");
	const char *model = gn_json_str(dcustom, "model"), *version = gn_json_str(dcustom, "version");
	const char *sha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
	uint64_t length = (uint64_t)json_integer_value(json_object_get(entry, "length"));
	int rc;

	failure_key(key, sizeof(key), entry);
	if (strcmp(s->try_key, key) != 0) {
		snprintf(s->try_key, sizeof(s->try_key), "%s", key);
		s->attempts = 0;
	}
	s->attempts++;
	s->retry_at = 0;
	if (!version || strlen(version) > GN_MODEL_VERSION_MAX || !sha || strlen(sha) != 64 ||
	    strspn(sha, "0123456789abcdef") != 64) {
		/* The digest names files on disk: only 64 lower-case hex digits will do. */
		attempt_failed(a, s, model, version, "director target lacks a version or a hex sha256", true);
		return;
	}
	const json_t *image_signed = NULL;
	if ((rc = image_lookup(&image_signed, a, image, path, &err)) ||
	    gn_tufc_director_entry_ok(image_signed, path, entry, &err)) {
		/* Metadata we could not fetch is transient; metadata that failed its checks is not. */
		attempt_failed(a, s, model, version, err.msg, rc != GN_EUNAVAIL && rc != GN_ERROR);
		return;
	}
	const json_t *image_entry = image_signed;
	if (!runnable_here(a, s, image_entry, model, version))
		return;
	prune_dir(a, "downloads", &sha, 1);
	report(a, s, "downloading", model, version, NULL);
	push_progress(a);
	if ((rc = download_artifact(a, sha, length, &file, &err))) {
		/* Bytes that do not match what is signed are the target's own failure; the rest
		 * (network, server, disk) is transient. */
		attempt_failed(a, s, model, version, err.msg, rc == GN_EAUTH);
		return;
	}
	report(a, s, "verifying", model, version, NULL);
	if ((rc = read_verified(&bytes, &signed_mismatch, image_entry, entry, path, file, sha, &err))) {
		drop_model_file(a, file, sha);
		attempt_failed(a, s, model, version, err.msg, signed_mismatch);
		goto out;
	}
	if ((rc = fetch_sample(&sample, &has_sample, a, json_object_get(image_entry, "custom"), model, version,
			       &err))) {
		attempt_failed(a, s, model, version, err.msg, rc == GN_EAUTH);
		goto out;
	}
	agent_telemetry_fetch_profile(a, model, version);
	paused_out = pause_if_no_room(a, s, image_entry, model, version);
	if (!paused_out)
		report(a, s, "loading", model, version, NULL);
	push_progress(a);
	if ((rc = models_load(&m, a, &bytes, model, version, sha, &err)) ||
	    (has_sample && (rc = models_self_test(a, m, &sample, &err)))) {
		models_unref(a, m);
		drop_model_file(a, file, sha);
		if (paused_out)
			restore_paused(a, s, paused_out);
		attempt_failed(a, s, model, version, err.msg, true);
		goto out;
	}
	/* The runtime keeps what it needs: the bytes can go before the swap. */
	models_file_cleanup(&bytes);
	s->held[0] = '\0'; /* what was held is replaced: this one is recorded without it */
	if ((rc = activate(a, s, m, paused_out, &err))) {
		if (paused_out)
			restore_paused(a, s, paused_out);
		attempt_failed(a, s, model, version, err.msg, false);
		goto out;
	}
	if (paused_out)
		models_resume(a, s);
	report(a, s, "active", model, version, NULL);
	s->attempts = 0;
	s->try_key[0] = '\0';
out:
	json_decref(paused_out);
	models_file_cleanup(&bytes);
	models_sample_cleanup(&sample);
	free(file);
}

/* True when model s should install the target entry now: it does not serve that version with those
 * bytes yet (a new version or another model with the same bytes is installed all the same), the
 * target is not held, and no attempt of it is waiting for its time. */
static bool wants_install(struct agent *a, struct agent_slot *s, const json_t *entry)
{
	const char *version = gn_json_str(json_object_get(entry, "custom"), "version");
	const char *sha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
	struct agent_model *cur = models_get(a, s->name);
	bool same = cur && version && sha && strcmp(cur->version, version) == 0 && strcmp(cur->sha256, sha) == 0;
	char key[96];
	models_unref(a, cur);
	if (same) {
		s->try_key[0] = '\0';
		s->attempts = 0;
		s->retry_at = 0;
		return false;
	}
	failure_key(key, sizeof(key), entry);
	if (strcmp(key, s->held) == 0)
		return false;
	return strcmp(key, s->try_key) != 0 || s->retry_at <= gn_now();
}

/* Unloads model s (the director no longer names it) and forgets it: its requests get 404, its
 * files go. */
static void unload(struct agent *a, struct agent_slot *s)
{
	char name[64], version[72] = "";
	gn_err err;
	snprintf(name, sizeof(name), "%s", s->name);
	struct agent_model *cur = models_get(a, name);
	if (cur)
		snprintf(version, sizeof(version), "%s", cur->version);
	models_unref(a, cur);
	models_slot_remove(a, s);
	if (save_state(a, NULL, NULL, NULL, &err))
		gn_log(GN_LOG_WARN, "event=state_not_saved msg=\"%s\"", err.msg);
	prune_models(a);
	report(a, NULL, "removed", name, version, "the director no longer names this model: unloaded");
}

/* Unloads every model that named (model name -> target) does not hold. */
static void unload_unnamed(struct agent *a, const json_t *named)
{
	for (;;) {
		struct agent_slot *gone = NULL;
		pthread_mutex_lock(&a->lock);
		for (size_t i = 0; i < a->nslots && !gone; i++)
			if (!json_object_get(named, a->slots[i]->name))
				gone = a->slots[i];
		pthread_mutex_unlock(&a->lock);
		if (!gone)
			return;
		unload(a, gone);
	}
}

/* The targets of director targets dt by model name, {MODEL: {"path", "entry"}} (new): the first
 * one of each model; one without a valid model name, or a second one of a model, is refused. */
static json_t *targets_by_model(struct agent *a, const json_t *dt)
{
	json_t *named = json_object(), *entry;
	const char *path;
	gn_err err;
	json_object_foreach(json_object_get(json_object_get(dt, "signed"), "targets"), path, entry) {
		const char *model = gn_json_str(json_object_get(entry, "custom"), "model");
		const char *version = gn_json_str(json_object_get(entry, "custom"), "version");
		if (!model || gn_model_name_check(model, &err)) {
			report(a, NULL, "failed", NULL, version, "a director target names no valid model");
			continue;
		}
		if (json_object_get(named, model)) {
			report(a, NULL, "failed", model, version,
			       "the director names this model twice; only its first target is used");
			continue;
		}
		json_object_set_new(named, model, json_pack("{s:s,s:O}", "path", path, "entry", entry));
	}
	return named;
}

/* Brings the models in line with the director's targets dt (verified): a model they do not name
 * is unloaded; each one they name is installed unless it serves already, is held, or waits for its
 * next attempt. The image repository is refreshed once, when an install needs it. */
static int apply(struct agent *a, const json_t *dt, gn_err *err)
{
	json_t *named = targets_by_model(a, dt), *t;
	struct image *image = NULL;
	const char *model;
	int rc = 0, tried = 0;
	unload_unnamed(a, named);
	json_object_foreach(named, model, t) {
		const json_t *entry = json_object_get(t, "entry");
		struct agent_slot *s = models_slot(a, model, true);
		if (atomic_load(&a->stopping) || !wants_install(a, s, entry))
			continue;
		if (!image && (rc = refresh_image(&image, a, err))) {
			report(a, s, "failed", model, gn_json_str(json_object_get(entry, "custom"), "version"),
			       err->msg);
			a->etag[0] = '\0'; /* ask again from scratch at the next check-in */
			rc = rc == GN_EUNAVAIL ? rc : 0;
			break;
		}
		/* The outcome of the model before is sent first, so that each model's becomes an event
		 * (the last one goes with the next check-in, once the metadata's memory is given back). */
		if (tried++)
			push_progress(a);
		install(a, s, image, gn_json_str(t, "path"), entry);
	}
	json_decref(named);
	image_free(image);
	return rc;
}

/* True when an attempt of some model is due. */
static bool retry_due(struct agent *a)
{
	int64_t now = gn_now();
	bool due = false;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots && !due; i++)
		due = a->slots[i]->retry_at && a->slots[i]->retry_at <= now;
	pthread_mutex_unlock(&a->lock);
	return due;
}

int64_t update_retry_wait(struct agent *a, int64_t wait)
{
	int64_t now = gn_now();
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots; i++) {
		/* One due already waits for the next check-in: the check-in's own pace (or back-off)
		 * decides, not a busy loop. */
		int64_t at = a->slots[i]->retry_at;
		if (at > now && at - now < wait)
			wait = at - now;
	}
	pthread_mutex_unlock(&a->lock);
	return wait;
}

/* Nothing changed on the server: the trusted director targets still hold, unless they expired
 * (a server answering 304 forever must not freeze the device silently); an attempt that is due
 * goes ahead with them. */
static int unchanged(struct agent *a, gn_err *err)
{
	json_t *trusted = NULL;
	gn_err e2;
	int rc = 0;
	if (state_read_json(&trusted, a, "trust/director/targets.json", &e2) != 0)
		return 0;
	if (gn_tufc_check_fresh(trusted, state_now(a), &e2)) {
		report(a, NULL, "failed", NULL, NULL, e2.msg);
		a->etag[0] = '\0';
	} else if (retry_due(a)) {
		rc = apply(a, trusted, err);
	}
	json_decref(trusted);
	return rc;
}

int update_once(struct agent *a, int64_t *out_poll, gn_err *err)
{
	json_t *ans = NULL, *dt = NULL;
	bool same = false;
	int rc = client_checkin(&ans, &same, a, false, err);
	if (rc)
		return rc;
	if (same) {
		rc = unchanged(a, err);
		goto out;
	}
	json_int_t poll = json_integer_value(json_object_get(ans, "poll_interval"));
	if (poll > 0)
		*out_poll = poll;
	if ((rc = check_director(&dt, a, json_object_get(ans, "director_targets"), err))) {
		/* Refused metadata: keep serving, report why (naming the version refused, so a repeat of
		 * the same one is one event and a new one is another), and ask again from scratch. */
		char detail[GN_ERR_MSG_MAX + 100];
		snprintf(detail, sizeof(detail), "director targets version %lld refused: %s",
			 (long long)json_integer_value(json_object_get(
				 json_object_get(json_object_get(ans, "director_targets"), "signed"), "version")),
			 err->msg);
		report(a, NULL, "failed", NULL, NULL, detail);
		a->etag[0] = '\0';
		rc = 0;
		goto out;
	}
	rc = apply(a, dt, err);
out:
	json_decref(ans);
	json_decref(dt);
	/* Metadata, models and their parses come and go in many small blocks; glibc keeps the freed
	 * ones (a live block above them pins the heap) until asked: a 150,000-signature timestamp
	 * once left 100+ MB resident for good. Give them back after each update. */
	malloc_trim(0);
	return rc;
}

/* --- start-up and rollback ----------------------------------------------------------------------- */

/* Loads the version a record of state.json names (re-verifying its file) into *out (new). */
static int load_record(struct agent_model **out, struct agent *a, const json_t *rec, gn_err *err)
{
	struct models_file bytes = {0};
	const char *sha = gn_json_str(rec, "sha256");
	char *file = gn_asprintf("%s/models/%s", a->cfg.data_dir, sha);
	/* Only bytes that still hash to what was verified are loaded (models_load checks). */
	int rc = models_file_load(&bytes, file, err);
	if (!rc)
		rc = models_load(out, a, &bytes, gn_json_str(rec, "name"), gn_json_str(rec, "version"), sha, err);
	models_file_cleanup(&bytes);
	free(file);
	return rc;
}

/* Restores one model of state.json: its slot, and the version that served. */
static void restore_one(struct agent *a, const char *name, const json_t *e)
{
	struct agent_slot *s = models_slot(a, name, true);
	const json_t *cur = json_object_get(e, "current"), *prev = json_object_get(e, "previous");
	struct agent_model *m = NULL;
	gn_err err;
	snprintf(s->held, sizeof(s->held), "%s", gn_json_str(e, "held") ? gn_json_str(e, "held") : "");
	s->previous = json_is_object(prev) ? json_incref((json_t *)prev) : NULL;
	if (!json_is_object(cur))
		return;
	if (load_record(&m, a, cur, &err)) {
		gn_log(GN_LOG_ERROR, "event=restore_failed model=%s msg=\"%s\"", name, err.msg);
		report(a, s, "failed", name, gn_json_str(cur, "version"), err.msg);
		return;
	}
	/* Older agents did not record the self-test; they installed only what passed it, if any. */
	snprintf(m->self_test, sizeof(m->self_test), "%s",
		 gn_json_str(cur, "self_test") ? gn_json_str(cur, "self_test") : "unknown");
	models_swap(a, s, m);
	report(a, s, "active", name, m->version, "restored at start-up");
}

int update_restore(struct agent *a, gn_err *err)
{
	json_t *raw = NULL, *st = NULL, *e;
	const char *name;
	bool migrated;
	int rc = state_read_json(&raw, a, "state.json", err);
	if (rc == GN_ENOTFOUND)
		return 0;
	if (rc || (rc = state_models_parse(&st, &migrated, raw, err)))
		goto out;
	json_object_foreach(json_object_get(st, "models"), name, e)
		restore_one(a, name, e);
	if (migrated) {
		/* Written in the current format at once: what is read next is what this agent wrote. */
		if ((rc = save_state(a, NULL, NULL, NULL, err)))
			goto out;
		gn_log(GN_LOG_INFO, "event=state_migrated models=%zu note=\"state.json of an older agent\"",
		       json_object_size(json_object_get(st, "models")));
	}
out:
	json_decref(raw);
	json_decref(st);
	return rc;
}

/* The slot a rollback acts on: name's, or the only one that serves. */
static int rollback_slot(struct agent_slot **out, struct agent *a, const char *name, gn_err *err)
{
	size_t serving = 0;
	*out = NULL;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots; i++) {
		if (name ? strcmp(a->slots[i]->name, name) == 0 : a->slots[i]->current != NULL) {
			*out = a->slots[i];
			serving++;
		}
	}
	pthread_mutex_unlock(&a->lock);
	if (name && !*out)
		return gn_err_set(err, GN_ENOTFOUND, "this device does not run model %s", name);
	if (!*out)
		return gn_err_set(err, GN_ENOTFOUND, "nothing installed, nothing to roll back to");
	if (serving > 1)
		return gn_err_set(err, GN_EINVAL,
				  "this device runs %zu models: roll one back with POST /v1/models/NAME/rollback",
				  serving);
	return 0;
}

/* The key of the director's target for model s that has the digest sha, or "" (the rolled-back
 * target, held until the director names another). */
static void held_key(char out[96], struct agent *a, const struct agent_slot *s, const char *sha)
{
	json_t *dt = NULL, *entry;
	const char *path;
	gn_err ignore;
	out[0] = '\0';
	if (state_read_json(&dt, a, "trust/director/targets.json", &ignore) != 0)
		return;
	json_object_foreach(json_object_get(json_object_get(dt, "signed"), "targets"), path, entry) {
		const char *esha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
		const char *model = gn_json_str(json_object_get(entry, "custom"), "model");
		if (esha && model && strcmp(esha, sha) == 0 && strcmp(model, s->name) == 0)
			failure_key(out, 96, entry);
	}
	json_decref(dt);
}

int update_rollback(struct agent *a, const char *name, gn_err *err)
{
	struct agent_slot *s = NULL;
	struct agent_model *m = NULL, *cur = NULL;
	json_t *next_prev = NULL;
	char held[96], old_held[96];
	int rc = rollback_slot(&s, a, name, err);
	if (rc)
		return rc;
	if (!(cur = models_get(a, s->name))) {
		rc = gn_err_set(err, GN_ENOTFOUND, "nothing installed, nothing to roll back to");
		goto out;
	}
	if (!s->previous) {
		rc = gn_err_set(err, GN_ENOTFOUND, "no previous version is kept");
		goto out;
	}
	if ((rc = load_record(&m, a, s->previous, err)))
		goto out;
	snprintf(m->self_test, sizeof(m->self_test), "%s",
		 gn_json_str(s->previous, "self_test") ? gn_json_str(s->previous, "self_test") : "unknown");
	/* "held": the rolled-back target, not reinstalled (even after a restart) until the director
	 * names another one. */
	held_key(held, a, s, cur->sha256);
	snprintf(old_held, sizeof(old_held), "%s", s->held);
	snprintf(s->held, sizeof(s->held), "%s", held);
	next_prev = record_of(cur);
	if ((rc = save_state(a, s, m, next_prev, err))) {
		snprintf(s->held, sizeof(s->held), "%s", old_held);
		models_unref(a, m);
		goto out;
	}
	json_decref(s->previous);
	s->previous = next_prev;
	next_prev = NULL;
	s->try_key[0] = '\0';
	s->attempts = 0;
	s->retry_at = 0;
	models_swap(a, s, m);
	report(a, s, "rolled_back", s->name, m->version, "local rollback to the previous version");
out:
	models_unref(a, cur);
	json_decref(next_prev);
	return rc;
}
