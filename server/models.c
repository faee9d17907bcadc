/* The model registry: versions (immutable, content-addressed), aliases, and publishing, which
 * records a version and re-signs the TUF targets in one transaction. */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "crypto.h"
#include "log.h"
#include "model_meta.h"
#include "npy.h"
#include "requirements.h"
#include "tuf_image.h"

#define VERSION_JSON                                                                                               \
	"jsonb_build_object('model', v.model, 'version', v.version, 'format', v.format, 'filename', v.filename,"   \
	" 'requirements', v.metadata->'requirements', 'inputs', v.metadata->'inputs', 'outputs',"                  \
	" v.metadata->'outputs', 'sample', v.sample_json::jsonb, 'reference_profile',"                             \
	" v.profile_json::jsonb, 'provenance', v.metadata->'provenance', 'artifact',"                              \
	" jsonb_build_object('sha256', v.sha256, 'length', v.length, 'url', '/v1/artifacts/sha256/' || v.sha256)," \
	" 'target', 'models/' || v.model || '/' || v.version || '/' || v.filename, 'custom', v.custom,"            \
	" 'published_by', v.published_by, 'published_at', gn_ts(v.published_at), " VERSION_STATE ")"

/* The members of a version's JSON on its self-test and a yank, in the version and in model lists. */
#define VERSION_STATE                                                                                    \
	"'self_test', v.sample_json IS NOT NULL, 'yanked', CASE WHEN v.yanked_at IS NULL THEN NULL ELSE" \
	" jsonb_build_object('at', gn_ts(v.yanked_at), 'by', v.yanked_by, 'reason', v.yank_reason) END"

/* Most bytes a version's custom fields may take in the signed targets metadata. */
#define MAX_TARGET_CUSTOM 16384

/* Newest first by semantic-version precedence (a release outranks its pre-releases). */
#define SEMVER_DESC \
	"v.major DESC, v.minor DESC, v.patch DESC, (v.prerelease IS NULL) DESC, v.prerelease_key COLLATE \"C\" DESC"

static const db_stmt st_exists = {"models_version_exists",
				  "SELECT 1 FROM model_versions WHERE model = $1 AND version = $2", 2};
static const db_stmt st_model_insert = {"models_insert",
					"INSERT INTO models (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", 1};
static const db_stmt st_version_insert = {
	"models_version_insert",
	"INSERT INTO model_versions (model, version, major, minor, patch, prerelease, format, filename, sha256,"
	" length, metadata, custom, published_by, sample_json, profile_json, prerelease_key)"
	" VALUES ($1, $2, $3, $4, $5, nullif($6, ''), $7, $8, $9, $10, $11::jsonb,"
	"  $12::jsonb || jsonb_build_object('published_at', gn_ts(now())), $13, $14, $15, nullif($16, ''))",
	16};
static const db_stmt st_version_get = {
	"models_version_get",
	"SELECT " VERSION_JSON "::text FROM model_versions v WHERE v.model = $1 AND v.version ="
	" coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
	2};
static const db_stmt st_digest_used = {"models_digest_used",
				       "SELECT 1 FROM model_versions WHERE sha256 = $1 UNION ALL"
				       " SELECT 1 FROM model_sample_files WHERE sha256 = $1 LIMIT 1",
				       1};
static const db_stmt st_sample_file_insert = {
	"models_sample_file_insert",
	"INSERT INTO model_sample_files (model, version, sha256, length) VALUES ($1, $2, $3, $4)"
	" ON CONFLICT DO NOTHING",
	4};
/* A sample file: readable by a device whose director targets name (or named) its version. */
static const db_stmt st_device_sample = {
	"models_device_sample",
	"SELECT 1 FROM model_sample_files f JOIN director_targets t ON t.device_id = $1 AND"
	" jsonb_path_exists(t.body::jsonb, '$.signed.targets.*.custom ? (@.model == $m && @.version == $v)',"
	" jsonb_build_object('m', f.model, 'v', f.version)) WHERE f.sha256 = $2 LIMIT 1",
	2};
/* Devices read only what their signed director targets name or named before (to roll back to
 * it): the bytes by digest, the version's metadata by model and version (an alias resolved now). */
static const db_stmt st_device_digest = {
	"models_device_digest",
	"SELECT 1 FROM director_targets t WHERE t.device_id = $1 AND jsonb_path_exists(t.body::jsonb,"
	" '$.signed.targets.*.hashes.sha256 ? (@ == $d)', jsonb_build_object('d', $2::text)) LIMIT 1",
	2};
/* A target at its TUF path: a version whose file is listed in the newest signed targets metadata of
 * the image repository's top-level targets role or of a delegated role. In delegated mode an
 * uploaded version that CI has not signed (yet, or ever) is no release, and is not served. */
static const db_stmt st_target = {
	"models_target",
	"SELECT 1 FROM model_versions v WHERE v.model = $1 AND v.version = $2 AND v.filename = $3 AND v.sha256 = $4"
	" AND EXISTS (SELECT 1 FROM (SELECT DISTINCT ON (role) body FROM tuf_metadata WHERE repo = 'image'"
	"  AND role NOT IN ('root', 'snapshot', 'timestamp') ORDER BY role, version DESC) m"
	"  WHERE m.body::jsonb -> 'signed' -> 'targets' -> ('models/' || $1 || '/' || $2 || '/' || $3)"
	"   -> 'hashes' ->> 'sha256' = $4)",
	4};
static const db_stmt st_device_version = {
	"models_device_version",
	"SELECT 1 FROM director_targets t WHERE t.device_id = $1 AND jsonb_path_exists(t.body::jsonb,"
	" '$.signed.targets.*.custom ? (@.model == $m && @.version == $v)', jsonb_build_object('m', $2::text, 'v',"
	" coalesce((SELECT version FROM model_aliases WHERE model = $2 AND alias = $3), $3::text))) LIMIT 1",
	3};
const db_stmt models_list_stmt = {
	"models_list",
	"SELECT jsonb_build_object('name', m.name, 'created_at', gn_ts(m.created_at),"
	" 'versions', (SELECT count(*) FROM model_versions v WHERE v.model = m.name),"
	" 'latest_version', (SELECT v.version FROM model_versions v WHERE v.model = m.name ORDER BY " SEMVER_DESC
	" LIMIT 1),"
	" 'aliases', (SELECT coalesce(jsonb_object_agg(a.alias, a.version), '{}') FROM model_aliases a WHERE a.model = m.name)"
	")::text, m.name FROM models m WHERE ($1::text IS NULL OR m.name > $1) ORDER BY m.name LIMIT $2",
	2};
static const db_stmt st_model_get = {
	"models_get",
	"SELECT jsonb_build_object('name', m.name, 'created_at', gn_ts(m.created_at),"
	" 'aliases', (SELECT coalesce(jsonb_object_agg(a.alias, a.version), '{}') FROM model_aliases a WHERE a.model = m.name),"
	" 'versions', (SELECT coalesce(jsonb_agg(jsonb_build_object('version', v.version, 'format', v.format,"
	"   'sha256', v.sha256, 'length', v.length, 'published_at', gn_ts(v.published_at), 'published_by', v.published_by,"
	"   " VERSION_STATE ") ORDER BY " SEMVER_DESC "), '[]') FROM model_versions v WHERE v.model = m.name))::text"
	" FROM models m WHERE m.name = $1",
	1};
static const db_stmt st_alias_set = {
	"models_alias_set",
	"INSERT INTO model_aliases (model, alias, version) SELECT model, $2, version FROM model_versions"
	" WHERE model = $1 AND version = $3"
	" ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version, updated_at = now()"
	" RETURNING jsonb_build_object('model', model, 'alias', alias, 'version', version)::text",
	3};
static const db_stmt st_alias_delete = {
	"models_alias_delete", "DELETE FROM model_aliases WHERE model = $1 AND alias = $2 RETURNING version", 2};

static const db_stmt st_yank = {"models_yank",
				"UPDATE model_versions SET yanked_at = coalesce(yanked_at, now()),"
				" yanked_by = CASE WHEN yanked_at IS NULL THEN $3 ELSE yanked_by END,"
				" yank_reason = CASE WHEN yanked_at IS NULL THEN $4 ELSE coalesce($4, yank_reason) END"
				" WHERE model = $1 AND version = $2 RETURNING 1",
				4};
static const db_stmt st_unyank = {"models_unyank",
				  "UPDATE model_versions SET yanked_at = NULL, yanked_by = NULL, yank_reason = NULL"
				  " WHERE model = $1 AND version = $2 RETURNING 1",
				  2};
static const db_stmt st_yanked = {
	"models_yanked",
	"SELECT coalesce(yank_reason, '') FROM model_versions WHERE model = $1 AND version = $2"
	" AND yanked_at IS NOT NULL",
	2};

static const db_stmt st_sample = {"models_sample",
				  "SELECT sample_json FROM model_versions WHERE model = $1 AND version ="
				  " coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
				  2};
static const db_stmt st_profile = {"models_profile",
				   "SELECT profile_json FROM model_versions WHERE model = $1 AND version ="
				   " coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
				   2};

/* Builds the TUF target's custom fields: integers and strings only, so it has a canonical form. */
static json_t *target_custom(const char *name, const struct model_meta *m, const json_t *meta, const char *sample_sha,
			     const char *profile_sha)
{
	json_t *c = json_pack("{s:s,s:s,s:s}", "model", name, "version", m->version, "format", m->format);
	static const char *const keep[] = {"requirements", "inputs", "outputs"};
	for (size_t i = 0; i < GN_ARRAY_LEN(keep); i++) {
		json_t *v = json_object_get(meta, keep[i]);
		json_object_set_new(c, keep[i], v ? json_deep_copy(v) : json_null());
	}
	json_object_set_new(c, "sample_sha256", sample_sha ? json_string(sample_sha) : json_null());
	json_object_set_new(c, "reference_profile_sha256", profile_sha ? json_string(profile_sha) : json_null());
	return c;
}

/* Removes the stored file of digest if no committed version references it (after a failed
 * publish, or when sweeping); *out_removed (may be NULL) tells whether it did. The digest's lock
 * orders this against a publish of the same bytes, which moves its file into place and commits
 * its row under that lock. Opens its own transaction. */
static int drop_if_unused(bool *out_removed, db_conn *c, const char *digest, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {digest};
	int error;
	if (out_removed)
		*out_removed = false;
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_lock_xact_text(c, DB_LOCK_NS_DIGEST, digest, err)) ||
	    (error = db_exec(&res, c, &st_digest_used, p, err)))
		goto out;
	if (PQntuples(res) == 0) {
		if ((error = artifacts_remove(digest, err)))
			goto out;
		if (out_removed)
			*out_removed = true;
	}
	error = db_tx_commit(c, err);
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error;
}

int models_sweep_artifacts(db_conn *c, int64_t grace_s, gn_err *err)
{
	char **digests = NULL;
	size_t n = 0, removed = 0;
	bool got = false;
	int error = db_try_lock_session(&got, c, DB_LOCK_ARTIFACT_SWEEP, err);
	if (error || !got) {
		if (!error)
			gn_log(GN_LOG_INFO, "event=artifacts_sweep_skipped note=\"another replica is sweeping\"");
		return error;
	}
	if (!(error = artifacts_sweep_temp(grace_s, err)))
		error = artifacts_list(&digests, &n, gn_now() - grace_s, err);
	for (size_t i = 0; !error && i < n; i++) {
		bool gone = false;
		if (!(error = drop_if_unused(&gone, c, digests[i], err)) && gone) {
			removed++;
			gn_log(GN_LOG_WARN,
			       "event=artifact_swept sha256=%s note=\"no committed version referenced it\"",
			       digests[i]);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(digests[i]);
	free(digests);
	if (!error && removed)
		gn_log(GN_LOG_INFO, "event=artifacts_swept removed=%zu checked=%zu", removed, n);
	db_unlock_session(c, DB_LOCK_ARTIFACT_SWEEP);
	return error;
}

/* Runs st (a one-row existence check); GN_EFORBIDDEN with `why` when it finds nothing. */
static int device_allowed(db_conn *c, const db_stmt *st, const char *const *p, const char *why, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, st, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_EFORBIDDEN, "%s", why);
	PQclear(res);
	return error;
}

int models_artifact_readable(db_conn *c, const struct gd_actor *who, const char *digest, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {digest};
	int error;
	if (who->kind == GD_ACTOR_DEVICE) {
		const char *pd[] = {who->id, digest};
		if (device_allowed(c, &st_device_digest, pd, "", err) &&
		    (error = device_allowed(c, &st_device_sample, pd,
					    "this device's director metadata has never named this artifact", err)))
			return error;
	}
	/* A file can exist without a committed version (a publish cut between moving it into place
	 * and committing its row, before the start-up sweep): such bytes were never released. */
	error = db_exec(&res, c, &st_digest_used, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "no such artifact");
	PQclear(res);
	return error;
}

int models_target_digest(char out[GN_SHA256_HEX_LEN + 1], db_conn *c, const struct gd_actor *who, const char *name,
			 const char *version, const char *file, gn_err *err)
{
	PGresult *res = NULL;
	size_t n = strspn(file, "0123456789abcdef");
	if (n != GN_SHA256_HEX_LEN || file[n] != '.' || !file[n + 1])
		return gn_err_set(
			err, GN_ENOTFOUND,
			"no such target: the file name must be the target's SHA-256 (64 lower-case hex digits), "
			"a dot and its file name");
	memcpy(out, file, GN_SHA256_HEX_LEN);
	out[GN_SHA256_HEX_LEN] = '\0';
	const char *p[] = {name, version, file + n + 1, out};
	int error = db_exec(&res, c, &st_target, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND,
				   "no such target in the image repository (name, version, file or hash)");
	PQclear(res);
	return error ? error : models_artifact_readable(c, who, out, err);
}

/* Parses and checks the metadata part; every failure is the client's (GN_EINVAL). */
static int parse_meta(json_t **out, struct model_meta *m, const char *meta, size_t len, int depth, gn_err *err)
{
	*out = NULL;
	if (gn_json_parse(out, meta, len, depth, err) || model_meta_check(m, *out, err)) {
		json_decref(*out);
		*out = NULL;
		err->code = GN_EINVAL;
		return GN_EINVAL;
	}
	return 0;
}

int models_upload_check(db_conn *c, const char *name, const char *meta, size_t len, int json_depth,
			int64_t max_artifact_size, gn_err *err)
{
	json_t *j = NULL;
	PGresult *res = NULL;
	struct model_meta m;
	int error;
	if ((error = parse_meta(&j, &m, meta, len, json_depth, err)))
		return error;
	json_decref(j);
	const char *pv[] = {name, m.version};
	if ((error = db_exec(&res, c, &st_exists, pv, err)))
		return error;
	if (PQntuples(res) > 0)
		error = gn_err_set(err, GN_ECONFLICT, "%s version %s is already published; versions are immutable",
				   name, m.version);
	else if (m.stated_length == 0)
		error = gn_err_set(err, GN_EINVAL,
				   "the stated length is 0: a model version needs a non-empty artifact");
	else if (m.stated_length >= 0 && m.stated_length > max_artifact_size)
		error = gn_err_set(err, GN_ETOOBIG, "the stated length is over max-artifact-size");
	PQclear(res);
	return error;
}

/* What a publish writes besides the file: the stored metadata and the signed custom fields, and
 * the exact bytes (and digests) of the sample and reference profile. */
struct release {
	char *stored, *custom, *sample, *profile;
	char sample_sha[65], profile_sha[65];
};

static void release_cleanup(struct release *rel)
{
	free(rel->stored);
	free(rel->custom);
	free(rel->sample);
	free(rel->profile);
}

static int release_build(struct release *rel, const char *name, const struct model_meta *m, const json_t *meta,
			 gn_err *err)
{
	json_t *stored = json_object();
	static const char *const keep[] = {"requirements", "inputs", "outputs", "provenance"};
	for (size_t i = 0; i < GN_ARRAY_LEN(keep); i++) {
		json_t *v = json_object_get(meta, keep[i]);
		json_object_set(stored, keep[i], v ? v : json_null());
	}
	json_t *sample = json_object_get(meta, "sample"), *profile = json_object_get(meta, "reference_profile");
	if (sample) {
		rel->sample = json_dumps(sample, JSON_COMPACT | JSON_SORT_KEYS);
		gn_sha256_hex(rel->sample_sha, rel->sample, strlen(rel->sample));
	}
	if (profile && !json_is_null(profile)) {
		rel->profile = json_dumps(profile, JSON_COMPACT | JSON_SORT_KEYS);
		gn_sha256_hex(rel->profile_sha, rel->profile, strlen(rel->profile));
	}
	json_t *custom = target_custom(name, m, meta, rel->sample ? rel->sample_sha : NULL,
				       rel->profile ? rel->profile_sha : NULL);
	rel->stored = json_dumps(stored, JSON_COMPACT | JSON_SORT_KEYS);
	rel->custom = gn_json_dump(custom);
	json_decref(stored);
	json_decref(custom);
	/* Every device downloads targets metadata listing every version: keep each entry small. */
	if (strlen(rel->custom) > MAX_TARGET_CUSTOM)
		return gn_err_set(err, GN_EINVAL,
				  "requirements, inputs and outputs take %zu bytes in the signed metadata; at most %d",
				  strlen(rel->custom), MAX_TARGET_CUSTOM);
	return 0;
}

/* Checks the received bytes against what the metadata states (and that there are some). */
static int check_stated(const struct model_meta *m, const char *digest, uint64_t length, gn_err *err)
{
	if (length == 0)
		return gn_err_set(
			err, GN_EINVAL,
			"the artifact is empty (0 bytes): a model version needs its model file; nothing was stored");
	if (m->stated_sha256[0] && strcmp(m->stated_sha256, digest) != 0)
		return gn_err_set(err, GN_EINVAL, "artifact SHA-256 is %s, the metadata states %s; nothing was stored",
				  digest, m->stated_sha256);
	if (m->stated_length >= 0 && (uint64_t)m->stated_length != length)
		return gn_err_set(err, GN_EINVAL,
				  "artifact is %llu bytes, the metadata states %lld; nothing was stored",
				  (unsigned long long)length, (long long)m->stated_length);
	return 0;
}

int models_artifact_begin(struct models_artifact *a, gn_err *err)
{
	int error = artifacts_begin(&a->up, err);
	if (!error)
		a->onnx = gn_onnx_stream_new();
	return error;
}

int models_artifact_write(struct models_artifact *a, const void *buf, size_t len, uint64_t max, gn_err *err)
{
	int error = artifacts_write(a->up, buf, len, max, err);
	if (!error)
		gn_onnx_stream_feed(a->onnx, buf, len);
	return error;
}

void models_artifact_cleanup(struct models_artifact *a)
{
	artifacts_abort(a->up);
	gn_onnx_stream_free(a->onnx);
	a->up = NULL;
	a->onnx = NULL;
}

/* An ONNX artifact's requirements.opset is the opset its file declares for the default domain
 * (gn_requirements_opset_reconcile): filled in when the metadata leaves it out, a 422 when it
 * states another (devices would trust a wrong requirement). A file that cannot be read, with no
 * opset stated, is stored without one, as before: the devices' load and self-test refuse it. */
static int check_opset(json_t *meta, const char *name, const struct model_meta *m, gn_onnx_stream *onnx, gn_err *err)
{
	int64_t opset = 0;
	gn_err e;
	if (strcmp(m->format, "onnx") != 0)
		return 0;
	int rc = gn_onnx_stream_finish(onnx, &opset, &e);
	if (rc == GN_EINVAL && !json_object_get(json_object_get(meta, "requirements"), "opset"))
		gn_log(GN_LOG_WARN, "event=model_not_onnx model=%s version=%s msg=\"%s\"", name, m->version, e.msg);
	if (gn_requirements_opset_reconcile(meta, "the artifact", rc, opset, rc ? e.msg : "", err)) {
		size_t n = strlen(err->msg);
		snprintf(err->msg + n, sizeof(err->msg) - n, "; nothing was stored");
		return GN_EMISMATCH;
	}
	return 0;
}

/* The sample files of a publish, finished: each one's digest, length and .npy header, and its
 * upload until it is committed. */
struct sample_files {
	size_t n;
	struct {
		artifact_upload *up;
		char digest[GN_SHA256_HEX_LEN + 1];
		uint64_t length;
		gn_npy npy;
		bool used, placed;
	} f[MODELS_MAX_SAMPLE_FILES];
};

/* Finishes each upload and reads its .npy header: a file must be exactly header and data. */
static int sample_files_finish(struct sample_files *sf, struct models_sample_file *files, size_t n, gn_err *err)
{
	gn_err e;
	int error;
	for (size_t i = 0; i < n; i++) {
		e.code = 0;
		sf->f[i].up = files[i].up;
		files[i].up = NULL;
		sf->n = i + 1;
		if ((error = artifacts_finish(sf->f[i].up, sf->f[i].digest, &sf->f[i].length, err)))
			return error;
		if (gn_npy_header_parse(&sf->f[i].npy, files[i].head.data, files[i].head.len, sf->f[i].length, &e) ||
		    sf->f[i].npy.header_len + sf->f[i].npy.data_len != sf->f[i].length)
			return gn_err_set(err, GN_EINVAL,
					  "sample file %zu (sha256 %s, %llu bytes): %s; nothing was stored", i + 1,
					  sf->f[i].digest, (unsigned long long)sf->f[i].length,
					  e.code ? e.msg : "its length is not that of its .npy header and data");
	}
	return 0;
}

/* Matches the sample's file references (sample.inputs/outputs.NAME = {"format": "npy", "sha256",
 * "length"}) with the files that arrived: each named file arrived, with that length and as many
 * elements as the tensor's shape holds; each file that arrived is named. */
static int sample_files_match(struct sample_files *sf, const json_t *meta, gn_err *err)
{
	static const char *const lists[] = {"inputs", "outputs"};
	const json_t *sample = json_object_get(meta, "sample");
	for (size_t l = 0; l < GN_ARRAY_LEN(lists); l++) {
		const char *k;
		json_t *v;
		json_object_foreach(json_object_get(sample, lists[l]), k, v) {
			if (!json_is_object(v))
				continue;
			const char *sha = gn_json_str(v, "sha256");
			size_t i = 0;
			while (i < sf->n && strcmp(sf->f[i].digest, sha) != 0)
				i++;
			if (i == sf->n)
				return gn_err_set(
					err, GN_EINVAL,
					"sample.%s.%.64s names sha256 %s, but no 'sample' part with those bytes "
					"arrived; nothing was stored",
					lists[l], k, sha);
			if ((int64_t)sf->f[i].length != json_integer_value(json_object_get(v, "length")))
				return gn_err_set(err, GN_EINVAL,
						  "sample.%s.%.64s states %lld bytes, its file has %llu", lists[l], k,
						  (long long)json_integer_value(json_object_get(v, "length")),
						  (unsigned long long)sf->f[i].length);
			int64_t want = model_meta_sample_elements(meta, lists[l], k);
			char shape[160];
			if (want > 0 && sf->f[i].npy.count != (uint64_t)want)
				return gn_err_set(err, GN_EINVAL,
						  "sample.%s.%.64s: its .npy file holds %llu elements (shape %s), the "
						  "tensor's shape needs %lld",
						  lists[l], k, (unsigned long long)sf->f[i].npy.count,
						  gn_npy_shape_str(&sf->f[i].npy, shape, sizeof(shape)),
						  (long long)want);
			sf->f[i].used = true;
		}
	}
	for (size_t i = 0; i < sf->n; i++)
		if (!sf->f[i].used)
			return gn_err_set(
				err, GN_EINVAL,
				"'sample' part %zu (sha256 %s) is not named by the sample (or was sent twice); "
				"nothing was stored",
				i + 1, sf->f[i].digest);
	return 0;
}

/* Records the sample files' rows and moves them into place, in the caller's transaction. */
static int sample_files_record(struct sample_files *sf, db_conn *c, const char *name, const char *version, gn_err *err)
{
	int error = 0;
	for (size_t i = 0; !error && i < sf->n; i++) {
		char len[32];
		snprintf(len, sizeof(len), "%llu", (unsigned long long)sf->f[i].length);
		const char *p[] = {name, version, sf->f[i].digest, len};
		if ((error = db_lock_xact_text(c, DB_LOCK_NS_DIGEST, sf->f[i].digest, err)) ||
		    (error = db_exec(NULL, c, &st_sample_file_insert, p, err)))
			break;
		error = artifacts_commit(sf->f[i].up, err);
		sf->f[i].up = NULL;
		sf->f[i].placed = !error;
	}
	return error;
}

/* Records the version, moves the file into place, re-signs TUF and audits, in one transaction;
 * *out_file tells whether the file was moved into place (to drop it if the rest fails). */
static int record(char **out, bool *out_file, db_conn *c, const struct gd_actor *who, const struct tuf_settings *tuf,
		  const char *name, const struct model_meta *m, const struct release *rel, artifact_upload **up,
		  struct sample_files *sf, const char *digest, uint64_t length, gn_err *err)
{
	PGresult *res = NULL;
	char len[32], maj[24], min[24], pat[24], object[200];
	int error;
	snprintf(len, sizeof(len), "%llu", (unsigned long long)length);
	snprintf(maj, sizeof(maj), "%lld", (long long)m->semver.major);
	snprintf(min, sizeof(min), "%lld", (long long)m->semver.minor);
	snprintf(pat, sizeof(pat), "%lld", (long long)m->semver.patch);
	snprintf(object, sizeof(object), "%s@%s", name, m->version);
	const char *pm[] = {name};
	const char *pv[] = {name,         m->version,
			    maj,          min,
			    pat,          m->semver.prerelease,
			    m->format,    m->filename,
			    digest,       len,
			    rel->stored,  rel->custom,
			    who->name,    rel->sample,
			    rel->profile, m->semver.prerelease_key};
	const char *pg[] = {name, m->version};
	if ((error = db_tx_begin(c, err)))
		return error;
	if ((error = db_exec(NULL, c, &st_model_insert, pm, err)) ||
	    (error = db_lock_xact_text(c, DB_LOCK_NS_DIGEST, digest, err)) ||
	    (error = db_exec(NULL, c, &st_version_insert, pv, err))) {
		if (error == GN_ECONFLICT)
			gn_err_set(err, GN_ECONFLICT, "%s version %s is already published; versions are immutable",
				   name, m->version);
		goto out;
	}
	/* The file goes into place before the row commits: no row ever points at a missing file. */
	error = artifacts_commit(*up, err);
	*up = NULL;
	if (error)
		goto out;
	*out_file = true;
	if ((error = sample_files_record(sf, c, name, m->version, err)) ||
	    (error = tuf_image_publish_targets(c, tuf, err)) ||
	    (error = audit_write(c, who, "model.publish", "model_version", object,
				 json_pack("{s:s,s:s,s:s,s:I}", "model", name, "version", m->version, "sha256", digest,
					   "length", (json_int_t)length),
				 err)) ||
	    (error = db_exec(&res, c, &st_version_get, pg, err)) || (error = db_tx_commit(c, err)))
		goto out;
	*out = gn_strdup(PQgetvalue(res, 0, 0));
out:
	if (error)
		db_tx_rollback(c);
	PQclear(res);
	return error;
}

int models_publish(char **out, db_conn *c, const struct gd_actor *who, const struct tuf_settings *tuf, const char *name,
		   const char *meta, size_t meta_len, int json_depth, struct models_artifact *art,
		   struct models_sample_file *files, size_t nfiles, gn_err *err)
{
	artifact_upload *up = art->up;
	art->up = NULL;
	struct sample_files *sf = gn_calloc(1, sizeof(*sf));
	json_t *j = NULL;
	struct model_meta m;
	struct release rel = {0};
	char digest[GN_SHA256_HEX_LEN + 1];
	uint64_t length = 0;
	bool file_placed = false;
	int error;
	*out = NULL;
	if ((error = parse_meta(&j, &m, meta, meta_len, json_depth, err)) ||
	    (error = artifacts_finish(up, digest, &length, err)) || (error = check_stated(&m, digest, length, err)) ||
	    (error = check_opset(j, name, &m, art->onnx, err)) ||
	    (error = sample_files_finish(sf, files, nfiles, err)) || (error = sample_files_match(sf, j, err)) ||
	    (error = release_build(&rel, name, &m, j, err)) ||
	    (error = record(out, &file_placed, c, who, tuf, name, &m, &rel, &up, sf, digest, length, err)))
		goto out;
	gn_log(GN_LOG_INFO, "event=model_published model=%s version=%s sha256=%s length=%llu", name, m.version, digest,
	       (unsigned long long)length);
out:
	if (error && file_placed) {
		gn_err derr;
		if (drop_if_unused(NULL, c, digest, &derr))
			gn_log(GN_LOG_WARN, "event=artifact_drop_failed sha256=%s msg=\"%s\"", digest, derr.msg);
	}
	for (size_t i = 0; i < sf->n; i++) {
		gn_err derr;
		if (error && sf->f[i].placed && drop_if_unused(NULL, c, sf->f[i].digest, &derr))
			gn_log(GN_LOG_WARN, "event=artifact_drop_failed sha256=%s msg=\"%s\"", sf->f[i].digest,
			       derr.msg);
		artifacts_abort(sf->f[i].up);
	}
	for (size_t i = 0; i < nfiles; i++) {
		artifacts_abort(files[i].up);
		files[i].up = NULL;
	}
	free(sf);
	artifacts_abort(up);
	models_artifact_cleanup(art);
	json_decref(j);
	release_cleanup(&rel);
	return error;
}

/* Runs a one-row read; GN_ENOTFOUND with `missing` when there is no row (or a NULL). */
static int read_one(char **out, db_conn *c, const db_stmt *st, const char *const *p, const char *missing, gn_err *err)
{
	PGresult *res = NULL;
	int error = db_exec(&res, c, st, p, err);
	*out = NULL;
	if (error)
		return error;
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
		error = gn_err_set(err, GN_ENOTFOUND, "%s", missing);
	else
		*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return error;
}

int models_get(char **out, db_conn *c, const char *name, gn_err *err)
{
	const char *p[] = {name};
	return read_one(out, c, &st_model_get, p, "no such model", err);
}

int models_version_get(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *version,
		       enum models_part part, gn_err *err)
{
	const char *p[] = {name, version};
	*out = NULL;
	if (who->kind == GD_ACTOR_DEVICE) {
		const char *pd[] = {who->id, name, version};
		int error = device_allowed(c, &st_device_version, pd,
					   "this device's director metadata has never named this model version", err);
		if (error)
			return error;
	}
	switch (part) {
	case MODELS_SAMPLE: return read_one(out, c, &st_sample, p, "no such model version, or it has no sample", err);
	case MODELS_PROFILE:
		return read_one(out, c, &st_profile, p, "no such model version, or it has no reference profile", err);
	default: return read_one(out, c, &st_version_get, p, "no such model version or alias", err);
	}
}

int models_alias_set(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
		     const char *version, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	*out = NULL;
	if ((error = model_alias_check(alias, err)))
		return error;
	if ((error = models_targetable(c, name, version, "an alias", err)))
		return error;
	const char *p[] = {name, alias, version};
	if ((error = audit_change(&res, c, who, &st_alias_set, p, "no such model version", "model.alias", "model", name,
				  json_pack("{s:s,s:s}", "alias", alias, "version", version), err)))
		return error;
	*out = gn_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

int models_alias_delete(db_conn *c, const struct gd_actor *who, const char *name, const char *alias, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name, alias};
	int error = audit_change(&res, c, who, &st_alias_delete, p, "no such alias", "model.alias_delete", "model",
				 name, json_pack("{s:s}", "alias", alias), err);
	PQclear(res);
	return error;
}

int models_targetable(db_conn *c, const char *name, const char *version, const char *what, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name, version};
	int error = db_exec(&res, c, &st_yanked, p, err);
	if (!error && PQntuples(res) > 0)
		error = gn_err_set(
			err, GN_ECONFLICT,
			"model %s version %s is yanked%s%s%s, so %s cannot newly target it; devices that run it "
			"keep it. Choose another version, or unyank it (ganglion models unyank %s %s)",
			name, version, *PQgetvalue(res, 0, 0) ? " (" : "", PQgetvalue(res, 0, 0),
			*PQgetvalue(res, 0, 0) ? ")" : "", what, name, version);
	PQclear(res);
	return error;
}

int models_yank(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *version, bool yank,
		const char *reason, gn_err *err)
{
	PGresult *res = NULL;
	char object[200], missing[300];
	int error;
	*out = NULL;
	if (reason && strlen(reason) > MODELS_YANK_REASON_MAX)
		return gn_err_set(err, GN_EINVAL, "the reason is %zu bytes; at most %d", strlen(reason),
				  MODELS_YANK_REASON_MAX);
	snprintf(object, sizeof(object), "%.80s@%.80s", name, version);
	snprintf(missing, sizeof(missing), "model %.80s has no version '%.80s' (yank names a version, not an alias)",
		 name, version);
	const char *py[] = {name, version, who->name, reason}, *pu[] = {name, version};
	json_t *detail = json_pack("{s:s,s:s}", "model", name, "version", version);
	if (yank && reason)
		json_object_set_new(detail, "reason", json_string(reason));
	if ((error = audit_change(&res, c, who, yank ? &st_yank : &st_unyank, yank ? py : pu, missing,
				  yank ? "model.yank" : "model.unyank", "model_version", object, detail, err)))
		return error;
	PQclear(res);
	gn_log(GN_LOG_INFO, "event=%s model=%s version=%s by=%s", yank ? "model_yanked" : "model_unyanked", name,
	       version, who->name);
	const char *pg[] = {name, version};
	return read_one(out, c, &st_version_get, pg, missing, err);
}

int models_alias_set_tx(db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
			const char *version, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name, alias, version};
	int error;
	if ((error = model_alias_check(alias, err)) || (error = models_targetable(c, name, version, "an alias", err)) ||
	    (error = db_exec(&res, c, &st_alias_set, p, err)))
		goto out;
	if (PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "model %s has no version %s", name, version);
	else
		error = audit_write(c, who, "model.alias", "model", name,
				    json_pack("{s:s,s:s}", "alias", alias, "version", version), err);
out:
	PQclear(res);
	return error;
}

int models_alias_delete_tx(db_conn *c, const struct gd_actor *who, const char *name, const char *alias, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {name, alias};
	int error = db_exec(&res, c, &st_alias_delete, p, err);
	if (!error && PQntuples(res) == 0)
		error = gn_err_set(err, GN_ENOTFOUND, "model %s has no alias %s", name, alias);
	if (!error)
		error = audit_write(c, who, "model.alias_delete", "model", name, json_pack("{s:s}", "alias", alias),
				    err);
	PQclear(res);
	return error;
}
