/* One check-in and the update it may bring: verify the director's and the image repository's
 * metadata (lib/tufclient.c; the limits are in docs/DESIGN.md), download the named artifact, read
 * it once and check those bytes, load the same bytes beside the current model, self-test it, swap.
 * Every failure on the way leaves the current model serving, and is reported. */
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
#include "tuf.h"
#include "tufclient.h"

/* The key under which a director target's failure is remembered (a->failed_key). */
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

void update_report(struct agent *a, const char *state, const char *model, const char *version, const char *detail)
{
	char at[21];
	gn_tuf_time(at, gn_now());
	json_t *op = json_pack("{s:s,s:s,s:s,s:s}", "state", state, "model", model ? model : "", "version",
			       version ? version : "", "at", at);
	if (detail)
		json_object_set_new(op, "detail", json_string(detail));
	pthread_mutex_lock(&a->lock);
	/* The same outcome again (metadata refused at every check-in) is one event, not one per poll. */
	bool same = a->last_op;
	static const char *const keys[] = {"state", "model", "version", "detail"};
	for (size_t i = 0; same && i < GN_ARRAY_LEN(keys); i++)
		same = json_equal(json_object_get(a->last_op, keys[i]), json_object_get(op, keys[i])) ||
		       (!json_object_get(a->last_op, keys[i]) && !json_object_get(op, keys[i]));
	if (same) {
		pthread_mutex_unlock(&a->lock);
		json_decref(op);
		return;
	}
	json_decref(a->last_op);
	a->last_op = op;
	char *text = json_dumps(op, JSON_COMPACT | JSON_SORT_KEYS);
	pthread_mutex_unlock(&a->lock);
	record_operation(a, text, strcmp(state, "failed") == 0);
	free(text);
	enum gn_log_level lvl = strcmp(state, "failed") == 0 ? GN_LOG_WARN : GN_LOG_INFO;
	if (detail)
		gn_log(lvl, "event=update state=%s model=%s version=%s detail=\"%s\"", state, model ? model : "-",
		       version ? version : "-", detail);
	else
		gn_log(lvl, "event=update state=%s model=%s version=%s", state, model ? model : "-",
		       version ? version : "-");
}

/* Sends the last operation now (best effort), so a long download or load shows on the server. */
static void push_progress(struct agent *a)
{
	json_t *ignored = NULL;
	bool unchanged;
	gn_err err;
	if (client_checkin(&ignored, &unchanged, a, true, &err))
		gn_log(GN_LOG_DEBUG, "event=progress_not_reported msg=\"%s\"", err.msg);
	json_decref(ignored);
}

/* Deletes the entries of the data dir's sub (models/, downloads/) that belong to neither keep1 nor
 * keep2: digests, or "DIGEST.part" for partial downloads. */
static void prune_dir(struct agent *a, const char *sub, const char *keep1, const char *keep2)
{
	char *dir = state_path(a, sub);
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || strlen(e->d_name) < 64)
			continue;
		if ((keep1 && strncmp(e->d_name, keep1, 64) == 0) || (keep2 && strncmp(e->d_name, keep2, 64) == 0))
			continue;
		char *p = gn_asprintf("%s/%s", dir, e->d_name);
		unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	free(dir);
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

/* Stores the image repository's timestamp, snapshot and targets as the trusted copies. */
static int store_image(struct agent *a, const struct fetched *ts, const struct fetched *sn, const struct fetched *tg,
		       gn_err *err)
{
	int rc = state_write_bytes(a, "trust/image/targets.json", tg->bytes, tg->len, err);
	if (!rc)
		rc = state_write_bytes(a, "trust/image/snapshot.json", sn->bytes, sn->len, err);
	if (!rc)
		rc = state_write_bytes(a, "trust/image/timestamp.json", ts->bytes, ts->len, err);
	return rc;
}

/* Brings the image repository up to date: root chain, timestamp, snapshot, targets. Timestamp,
 * snapshot and targets become trusted together, once each has passed its own checks and they
 * agree with each other (versions, lengths, hashes): a later update is never checked against
 * metadata that failed. */
static int refresh_image(json_t **out_targets, struct agent *a, gn_err *err)
{
	json_t *root = NULL;
	struct fetched ts = {0}, sn = {0}, tg = {0};
	char path[96];
	int rc;
	if ((rc = refresh_root(&root, a, "image", err)) ||
	    (rc = fetch_role(&ts, a, root, "image", "timestamp", "/v1/tuf/image/timestamp.json",
			     GN_TUF_MAX_TIMESTAMP_BYTES, err)))
		goto out;
	snprintf(path, sizeof(path), "/v1/tuf/image/%lld.snapshot.json",
		 (long long)listed_version(ts.env, "snapshot.json"));
	if ((rc = fetch_role(&sn, a, root, "image", "snapshot", path,
			     gn_tufc_fetch_limit(ts.env, "snapshot.json", GN_TUF_MAX_SNAPSHOT_BYTES), err)) ||
	    (rc = gn_tufc_meta_matches(ts.env, "snapshot.json", sn.env, sn.bytes, sn.len, err)))
		goto out;
	snprintf(path, sizeof(path), "/v1/tuf/image/%lld.targets.json",
		 (long long)listed_version(sn.env, "targets.json"));
	if ((rc = fetch_role(&tg, a, root, "image", "targets", path,
			     gn_tufc_fetch_limit(sn.env, "targets.json", GN_TUF_MAX_TARGETS_BYTES), err)) ||
	    (rc = gn_tufc_meta_matches(sn.env, "targets.json", tg.env, tg.bytes, tg.len, err)) ||
	    (rc = store_image(a, &ts, &sn, &tg, err)))
		goto out;
	*out_targets = tg.env;
	tg.env = NULL;
out:
	json_decref(root);
	fetched_cleanup(&ts);
	fetched_cleanup(&sn);
	fetched_cleanup(&tg);
	return rc;
}

/* Checks the director targets from a check-in answer and stores them. */
static int check_director(json_t **out, struct agent *a, const json_t *dt, gn_err *err)
{
	json_t *root = NULL, *trusted = NULL;
	int rc = refresh_root(&root, a, "director", err);
	if (rc)
		return rc;
	if ((rc = state_read_json(&trusted, a, "trust/director/targets.json", err)) == GN_ENOTFOUND) {
		trusted = NULL;
		rc = 0;
	}
	if (!rc && !(rc = gn_tufc_check_role(root, "targets", dt, trusted, state_now(a), err))) {
		const json_t *custom = json_object_get(json_object_get(dt, "signed"), "custom");
		const char *id = gn_json_str(custom, "device_id");
		int64_t issued;
		if (!id || strcmp(id, a->device_id) != 0)
			rc = gn_err_set(err, GN_EAUTH, "director metadata is for device %s, not this one",
					id ? id : "(none)");
		else if (!(rc = state_write_json(a, "trust/director/targets.json", dt, err)) &&
			 gn_tuf_time_parse(&issued, gn_json_str(custom, "issued_at")) == 0) {
			/* Raise the clock floor with care: a stolen online key could sign a time in the far
			 * future and freeze the device for good. Never past the metadata's own expiry, and
			 * while the system clock is not behind the floor, not past it by more than a day. */
			int64_t exp = 0, now = gn_now();
			if (gn_tuf_time_parse(&exp, gn_json_str(json_object_get(dt, "signed"), "expires")) == 0 &&
			    issued <= exp && (now < a->clock_floor || issued <= now + 86400))
				state_clock_seen(a, issued);
			else
				gn_log(GN_LOG_WARN, "event=issued_at_ignored issued_at=%s",
				       gn_json_str(custom, "issued_at"));
		}
	}
	json_decref(root);
	json_decref(trusted);
	if (!rc)
		*out = json_incref((json_t *)dt);
	return rc;
}

/* Removes models/SHA256, a file that failed to load or to self-test, as a failed download is
 * removed; never the file of the model that serves. */
static void drop_model_file(struct agent *a, const char *file, const char *sha)
{
	struct agent_model *cur = models_get(a);
	if (!cur || strcmp(cur->sha256, sha) != 0) {
		if (unlink(file) == 0)
			gn_log(GN_LOG_INFO, "event=model_file_removed sha256=%s", sha);
	}
	models_unref(a, cur);
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

/* Fetches the release's sample and checks it against its signed SHA-256; *out stays NULL when
 * the release has none. GN_EAUTH when it does not match. */
static int fetch_sample(json_t **out, struct agent *a, const json_t *icustom, const char *model, const char *version,
			gn_err *err)
{
	const char *want = gn_json_str(icustom, "sample_sha256");
	char spath[256], ssum[GN_SHA256_HEX_LEN + 1], *bytes = NULL;
	size_t len = 0;
	*out = NULL;
	if (!want)
		return 0;
	snprintf(spath, sizeof(spath), "/v1/models/%s/versions/%s/sample", model, version);
	int rc = client_get(&bytes, &len, a, spath, 64 << 20, err);
	if (rc)
		return rc;
	gn_sha256_hex(ssum, bytes, len);
	if (strcmp(ssum, want) != 0 || !(*out = json_loadb(bytes, len, 0, NULL)))
		rc = gn_err_set(err, GN_EAUTH, "the sample does not match its signed SHA-256");
	free(bytes);
	return rc;
}

/* Makes m current, recording the new state (and the old one as "previous") before the swap is
 * visible. Takes over m's reference, also on failure. */
static int activate(struct agent *a, struct agent_model *m, const char *model, const char *version, const char *sha,
		    const char *path, gn_err *err)
{
	struct agent_model *cur = models_get(a);
	json_t *prev =
		cur ? json_pack("{s:s,s:s,s:s}", "name", cur->name, "version", cur->version, "sha256", cur->sha256)
		    : json_null();
	json_t *state = json_pack("{s:{s:s,s:s,s:s,s:s},s:o}", "current", "name", model, "version", version, "sha256",
				  sha, "path", path, "previous", prev);
	char keep[GN_SHA256_HEX_LEN + 1];
	snprintf(keep, sizeof(keep), "%s", cur ? cur->sha256 : "");
	models_unref(a, cur);
	int rc = state_write_json(a, "state.json", state, err);
	json_decref(state);
	if (rc) {
		models_unref(a, m);
		return rc;
	}
	models_swap(a, m);
	prune_dir(a, "models", sha, keep[0] ? keep : NULL);
	return 0;
}

/* Verifies, downloads, loads, self-tests and swaps in the target the director names. */
static int install(struct agent *a, const json_t *image_targets, const char *path, const json_t *entry, gn_err *outerr)
{
	gn_err err;
	char *file = NULL;
	json_t *sample = NULL;
	struct models_file bytes = {0};
	struct agent_model *m = NULL;
	bool signed_mismatch = false;
	const json_t *dcustom = json_object_get(entry, "custom");
	const char *model = gn_json_str(dcustom, "model"), *version = gn_json_str(dcustom, "version");
	const char *sha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
	uint64_t length = (uint64_t)json_integer_value(json_object_get(entry, "length"));
	int rc = 0;

	if (!model || !version || !sha || strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64) {
		/* The digest names files on disk: only 64 lower-case hex digits will do. */
		update_report(a, "failed", model, version, "director target lacks model, version or a hex sha256");
		return 0;
	}
	if ((rc = gn_tufc_director_target_ok(image_targets, path, entry, &err))) {
		update_report(a, "failed", model, version, err.msg);
		failure_key(a->failed_key, sizeof(a->failed_key), entry);
		return 0;
	}
	const json_t *image_entry = gn_tufc_target(image_targets, path);
	prune_dir(a, "downloads", sha, NULL);
	update_report(a, "downloading", model, version, NULL);
	push_progress(a);
	if ((rc = download_artifact(a, sha, length, &file, &err))) {
		update_report(a, "failed", model, version, err.msg);
		if (rc == GN_EAUTH)
			failure_key(a->failed_key, sizeof(a->failed_key), entry);
		if (outerr)
			*outerr = err;
		return rc == GN_EAUTH ? 0 : rc;
	}
	update_report(a, "verifying", model, version, NULL);
	if ((rc = read_verified(&bytes, &signed_mismatch, image_entry, entry, path, file, sha, &err))) {
		update_report(a, "failed", model, version, err.msg);
		if (signed_mismatch)
			failure_key(a->failed_key, sizeof(a->failed_key), entry);
		drop_model_file(a, file, sha);
		rc = 0;
		goto out;
	}
	if ((rc = fetch_sample(&sample, a, json_object_get(image_entry, "custom"), model, version, &err))) {
		update_report(a, "failed", model, version, err.msg);
		if (rc == GN_EAUTH) {
			failure_key(a->failed_key, sizeof(a->failed_key), entry);
			rc = 0;
		}
		goto out;
	}
	update_report(a, "loading", model, version, NULL);
	push_progress(a);
	if ((rc = models_load(&m, a, &bytes, model, version, sha, &err)) ||
	    (sample && (rc = models_self_test(a, m, sample, &err)))) {
		update_report(a, "failed", model, version, err.msg);
		failure_key(a->failed_key, sizeof(a->failed_key), entry);
		models_unref(a, m);
		drop_model_file(a, file, sha);
		rc = 0;
		goto out;
	}
	/* The runtime keeps what it needs: the bytes can go before the swap. */
	models_file_cleanup(&bytes);
	if ((rc = activate(a, m, model, version, sha, path, &err))) {
		update_report(a, "failed", model, version, err.msg);
		goto out;
	}
	a->failed_key[0] = '\0';
	update_report(a, "active", model, version, NULL);
out:
	models_file_cleanup(&bytes);
	json_decref(sample);
	free(file);
	return rc;
}

int update_once(struct agent *a, int64_t *out_poll, gn_err *err)
{
	json_t *ans = NULL, *dt = NULL, *image = NULL;
	bool unchanged = false;
	int rc = client_checkin(&ans, &unchanged, a, false, err);
	if (rc)
		return rc;
	if (unchanged) {
		/* "Nothing changed" must not hide expired metadata (a server answering 304 forever
		 * would freeze the device silently): check the trusted copy's expiry. */
		json_t *trusted = NULL;
		gn_err e2;
		if (state_read_json(&trusted, a, "trust/director/targets.json", &e2) == 0 &&
		    gn_tufc_check_fresh(trusted, state_now(a), &e2)) {
			update_report(a, "failed", NULL, NULL, e2.msg);
			a->etag[0] = '\0';
		}
		json_decref(trusted);
		return 0;
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
		update_report(a, "failed", NULL, NULL, detail);
		a->etag[0] = '\0';
		rc = 0;
		goto out;
	}
	const json_t *targets = json_object_get(json_object_get(dt, "signed"), "targets");
	const char *path;
	json_t *entry;
	json_object_foreach((json_t *)targets, path, entry) {
		const char *sha = json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
		struct agent_model *cur = models_get(a);
		bool same = cur && sha && strcmp(cur->sha256, sha) == 0;
		models_unref(a, cur);
		char key[96];
		failure_key(key, sizeof(key), entry);
		if (same || strcmp(key, a->failed_key) == 0)
			continue;
		if ((rc = refresh_image(&image, a, err))) {
			update_report(a, "failed", gn_json_str(json_object_get(entry, "custom"), "model"),
				      gn_json_str(json_object_get(entry, "custom"), "version"), err->msg);
			a->etag[0] = '\0';
			rc = rc == GN_EUNAVAIL ? rc : 0;
			goto out;
		}
		rc = install(a, image, path, entry, err);
		if (rc)
			a->etag[0] = '\0'; /* transient (network): try again at the next check-in */
		break;                     /* one model per device for now */
	}
out:
	json_decref(ans);
	json_decref(dt);
	json_decref(image);
	/* Metadata, models and their parses come and go in many small blocks; glibc keeps the freed
	 * ones (a live block above them pins the heap) until asked: a 150,000-signature timestamp
	 * once left 100+ MB resident for good. Give them back after each update. */
	malloc_trim(0);
	return rc;
}

int update_restore(struct agent *a, gn_err *err)
{
	json_t *state = NULL;
	struct agent_model *m = NULL;
	struct models_file bytes = {0};
	int rc = state_read_json(&state, a, "state.json", err);
	if (rc == GN_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	const json_t *cur = json_object_get(state, "current");
	const char *name = gn_json_str(cur, "name"), *version = gn_json_str(cur, "version"),
		   *sha = gn_json_str(cur, "sha256");
	if (gn_json_str(state, "held"))
		snprintf(a->failed_key, sizeof(a->failed_key), "%s", gn_json_str(state, "held"));
	if (!name || !version || !sha) {
		json_decref(state);
		return 0;
	}
	char *file = gn_asprintf("%s/models/%s", a->cfg.data_dir, sha);
	/* Only bytes that still hash to what was verified are loaded (models_load checks). */
	if (!(rc = models_file_load(&bytes, file, err)) &&
	    !(rc = models_load(&m, a, &bytes, name, version, sha, err))) {
		models_swap(a, m);
		update_report(a, "active", name, version, "restored at start-up");
	}
	models_file_cleanup(&bytes);
	free(file);
	json_decref(state);
	return rc;
}

int update_rollback(struct agent *a, gn_err *err)
{
	json_t *state = NULL, *next = NULL;
	struct agent_model *m = NULL;
	struct models_file bytes = {0};
	int rc = state_read_json(&state, a, "state.json", err);
	if (rc)
		return rc == GN_ENOTFOUND ? gn_err_set(err, GN_ENOTFOUND, "nothing installed, nothing to roll back to")
					  : rc;
	const json_t *cur = json_object_get(state, "current"), *prev = json_object_get(state, "previous");
	const char *name = gn_json_str(prev, "name"), *version = gn_json_str(prev, "version"),
		   *sha = gn_json_str(prev, "sha256");
	if (!name || !version || !sha) {
		json_decref(state);
		return gn_err_set(err, GN_ENOTFOUND, "no previous version is kept");
	}
	char *file = gn_asprintf("%s/models/%s", a->cfg.data_dir, sha);
	if ((rc = models_file_load(&bytes, file, err)) || (rc = models_load(&m, a, &bytes, name, version, sha, err)))
		goto out;
	models_file_cleanup(&bytes);
	/* "held": the rolled-back target, not reinstalled (even after a restart) until the director
	 * names another one. */
	char held[96] = "";
	json_t *dt = NULL;
	gn_err ignore;
	if (state_read_json(&dt, a, "trust/director/targets.json", &ignore) == 0) {
		const char *path;
		json_t *entry;
		json_object_foreach(json_object_get(json_object_get(dt, "signed"), "targets"), path, entry) {
			const char *esha =
				json_string_value(json_object_get(json_object_get(entry, "hashes"), "sha256"));
			if (esha && gn_json_str(cur, "sha256") && strcmp(esha, gn_json_str(cur, "sha256")) == 0)
				failure_key(held, sizeof(held), entry);
		}
		json_decref(dt);
	}
	next = json_pack("{s:O,s:O,s:s}", "current", prev, "previous", cur, "held", held);
	if ((rc = state_write_json(a, "state.json", next, err))) {
		models_unref(a, m);
		goto out;
	}
	/* Do not reinstall what was rolled back until the director names something else or the
	 * operator assigns it again. */
	snprintf(a->failed_key, sizeof(a->failed_key), "%s", held);
	models_swap(a, m);
	update_report(a, "rolled_back", name, version, "local rollback to the previous version");
out:
	models_file_cleanup(&bytes);
	free(file);
	json_decref(state);
	json_decref(next);
	return rc;
}
