/* /v1/models: the model registry. Publishing streams the artifact to the content-addressed store
 * while hashing it, then records the version and re-signs the TUF targets in one transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "artifacts.h"
#include "audit.h"
#include "gangliond.h"
#include "http.h"
#include "log.h"
#include "model_meta.h"
#include "tufrepo.h"

#define VERSION_JSON                                                                                      \
	"jsonb_build_object('model', v.model, 'version', v.version, 'format', v.format, 'filename', v.filename," \
	" 'requirements', v.metadata->'requirements', 'inputs', v.metadata->'inputs', 'outputs',"              \
	" v.metadata->'outputs', 'sample', v.sample_json::jsonb, 'reference_profile',"                       \
	" v.profile_json::jsonb, 'provenance', v.metadata->'provenance', 'artifact',"                         \
	" jsonb_build_object('sha256', v.sha256, 'length', v.length, 'url', '/v1/artifacts/sha256/' || v.sha256)," \
	" 'target', 'models/' || v.model || '/' || v.version || '/' || v.filename, 'custom', v.custom,"        \
	" 'published_by', v.published_by, 'published_at', gn_ts(v.published_at))"

/* Most bytes a version's custom fields may take in the signed targets metadata. */
#define MAX_TARGET_CUSTOM 16384

/* Newest first by semantic-version precedence (a release outranks its pre-releases). */
#define SEMVER_DESC \
	"v.major DESC, v.minor DESC, v.patch DESC, (v.prerelease IS NULL) DESC, v.prerelease_key COLLATE \"C\" DESC"

static const db_stmt st_exists = {
	"models_version_exists", "SELECT 1 FROM model_versions WHERE model = $1 AND version = $2", 2};
static const db_stmt st_model_insert = {
	"models_insert", "INSERT INTO models (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", 1};
static const db_stmt st_digest_lock = {
	"models_digest_lock", "SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", 1};
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
static const db_stmt st_digest_used = {
	"models_digest_used", "SELECT 1 FROM model_versions WHERE sha256 = $1 LIMIT 1", 1};
static const db_stmt st_list = {
	"models_list",
	"SELECT jsonb_build_object('name', m.name, 'created_at', gn_ts(m.created_at),"
	" 'versions', (SELECT count(*) FROM model_versions v WHERE v.model = m.name),"
	" 'latest_version', (SELECT v.version FROM model_versions v WHERE v.model = m.name ORDER BY " SEMVER_DESC " LIMIT 1),"
	" 'aliases', (SELECT coalesce(jsonb_object_agg(a.alias, a.version), '{}') FROM model_aliases a WHERE a.model = m.name)"
	")::text, m.name FROM models m WHERE ($1::text IS NULL OR m.name > $1) ORDER BY m.name LIMIT $2",
	2};
static const db_stmt st_model_get = {
	"models_get",
	"SELECT jsonb_build_object('name', m.name, 'created_at', gn_ts(m.created_at),"
	" 'aliases', (SELECT coalesce(jsonb_object_agg(a.alias, a.version), '{}') FROM model_aliases a WHERE a.model = m.name),"
	" 'versions', (SELECT coalesce(jsonb_agg(jsonb_build_object('version', v.version, 'format', v.format,"
	"   'sha256', v.sha256, 'length', v.length, 'published_at', gn_ts(v.published_at), 'published_by', v.published_by)"
	"   ORDER BY " SEMVER_DESC "), '[]') FROM model_versions v WHERE v.model = m.name))::text"
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

/* --- publishing ------------------------------------------------------------------------------ */

struct publish {
	struct MHD_PostProcessor *pp;
	gn_buf meta;
	artifact_upload *up;
	bool meta_checked;
	char *part;         /* the part being received */
	gn_err err;
	int status; /* non-zero once the upload has failed */
};

static void publish_fail(struct publish *p, int status, const char *msg)
{
	if (p->status)
		return;
	p->status = status;
	snprintf(p->err.msg, sizeof(p->err.msg), "%s", msg);
}

/* Checks the metadata as soon as the artifact starts, so a bad or duplicate version is refused
 * before gigabytes arrive. (The metadata part must come first for this; if it comes later, the
 * same checks run once the body is complete.) */
static int early_check(struct gd_req *r, struct publish *p)
{
	json_t *meta = NULL;
	PGresult *res = NULL;
	struct model_meta m;
	gn_err err;
	p->meta_checked = true;
	if (!p->meta.len)
		return 0;
	if (gn_json_parse(&meta, p->meta.data, p->meta.len, (int)atomic_load(&gd.max_json_depth), &err) ||
	    model_meta_check(&m, meta, &err)) {
		publish_fail(p, 400, err.msg);
		json_decref(meta);
		return -1;
	}
	json_decref(meta);
	const char *pv[] = {gd_param(r, 0), m.version};
	int rc = db_exec(&res, gd_db(r), &st_exists, pv, &err);
	db_release(gd.pool, r->db);
	r->db = NULL;
	if (rc) {
		publish_fail(p, gd_http_status(err.code), err.msg);
		return -1;
	}
	if (PQntuples(res) > 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s version %s is already published; versions are immutable", gd_param(r, 0), m.version);
		publish_fail(p, 409, msg);
		PQclear(res);
		return -1;
	}
	PQclear(res);
	if (m.stated_length >= 0 && m.stated_length > atomic_load(&gd.max_artifact_size)) {
		publish_fail(p, 413, "the stated length is over max-artifact-size");
		return -1;
	}
	return 0;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
			       const char *content_type, const char *transfer_encoding, const char *data,
			       uint64_t off, size_t size)
{
	struct gd_req *r = cls;
	struct publish *p = r->stream_ctx;
	gn_err err;
	if (p->status)
		return MHD_NO;
	if (strcmp(key, "metadata") == 0) {
		if (p->meta.len + size > (size_t)atomic_load(&gd.max_body)) {
			publish_fail(p, 413, "the metadata part is larger than max-body");
			return MHD_NO;
		}
		gn_buf_append(&p->meta, data, size);
		return MHD_YES;
	}
	if (strcmp(key, "artifact") != 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown form part '%.64s' (expected 'metadata' and 'artifact')", key);
		publish_fail(p, 400, msg);
		return MHD_NO;
	}
	if (off == 0 && p->up) {
		publish_fail(p, 400, "more than one 'artifact' part");
		return MHD_NO;
	}
	if (!p->meta_checked && early_check(r, p))
		return MHD_NO;
	if (!p->up) {
		if (artifacts_begin(&p->up, &err)) {
			publish_fail(p, 500, err.msg);
			return MHD_NO;
		}
	}
	if (size && artifacts_write(p->up, data, size, (uint64_t)atomic_load(&gd.max_artifact_size), &err)) {
		publish_fail(p, gd_http_status(err.code), err.msg);
		return MHD_NO;
	}
	return MHD_YES;
}

static int publish_begin(struct gd_req *r)
{
	gn_err err;
	const char *ct = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	int64_t max = atomic_load(&gd.max_artifact_size) + atomic_load(&gd.max_body) + 65536;
	if (model_name_check(gd_param(r, 0), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return -1;
	}
	if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		gd_reply_problem(r, 415, "publish with multipart/form-data: a 'metadata' part, then an 'artifact' part");
		return -1;
	}
	if (cl && strtoll(cl, NULL, 10) > max) {
		char msg[128];
		snprintf(msg, sizeof(msg), "upload larger than the %lld-byte artifact limit",
			 (long long)atomic_load(&gd.max_artifact_size));
		gd_reply_problem(r, 413, msg);
		return -1;
	}
	struct publish *p = gn_calloc(1, sizeof(*p));
	gn_buf_init(&p->meta);
	r->stream_ctx = p;
	p->pp = MHD_create_post_processor(r->conn, 256 * 1024, on_part, r);
	if (!p->pp) {
		gd_reply_problem(r, 400, "cannot read the multipart body (missing boundary?)");
		return -1;
	}
	return 0;
}

static int publish_data(struct gd_req *r, const char *buf, size_t len)
{
	struct publish *p = r->stream_ctx;
	if (MHD_post_process(p->pp, buf, len) != MHD_YES && !p->status)
		publish_fail(p, 400, "malformed multipart body");
	if (p->status) {
		gd_reply_problem(r, p->status, p->err.msg);
		return -1;
	}
	return 0;
}

static void publish_free(struct gd_req *r)
{
	struct publish *p = r->stream_ctx;
	if (!p)
		return;
	if (p->pp)
		MHD_destroy_post_processor(p->pp);
	artifacts_abort(p->up);
	gn_buf_cleanup(&p->meta);
	free(p);
	r->stream_ctx = NULL;
}

static void publish_abort(struct gd_req *r)
{
	if (r->stream_ctx)
		gn_log(GN_LOG_INFO, "event=upload_aborted model=%s", gd_param(r, 0));
	publish_free(r);
}

const struct gd_stream http_models_publish_stream = {publish_begin, publish_data, publish_abort};

/* Builds the TUF target's custom fields: integers and strings only, so it has a canonical form. */
static json_t *target_custom(const char *name, const struct model_meta *m, const json_t *meta,
			     const char *sample_sha, const char *profile_sha)
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

/* Removes a stored artifact that no version references (after a failed publish). */
static void drop_if_unused(db_conn *c, const char *digest)
{
	gn_err err;
	PGresult *res = NULL;
	const char *p[] = {digest};
	if (db_exec_sql(c, "BEGIN", &err) || db_exec(NULL, c, &st_digest_lock, p, &err) ||
	    db_exec(&res, c, &st_digest_used, p, &err)) {
		db_exec_sql_logged(c, "ROLLBACK");
		return;
	}
	if (PQntuples(res) == 0) {
		char *path = artifacts_path(digest);
		unlink(path);
		free(path);
	}
	PQclear(res);
	db_exec_sql_logged(c, "COMMIT");
}

void http_models_publish(struct gd_req *r)
{
	struct publish *p = r->stream_ctx;
	struct model_meta m;
	json_t *meta = NULL, *stored = NULL, *custom = NULL;
	PGresult *res = NULL;
	char *s_stored = NULL, *s_custom = NULL, *sample_bytes = NULL, *profile_bytes = NULL;
	char digest[GN_SHA256_HEX_LEN + 1], sample_sha[65], profile_sha[65], len[32], maj[24], min[24], pat[24];
	uint64_t length = 0;
	bool committed_file = false;
	gn_err err;
	const char *name = gd_param(r, 0);

	/* Destroying the post processor flushes the last part. */
	if (MHD_destroy_post_processor(p->pp) != MHD_YES && !p->status)
		publish_fail(p, 400, "malformed or truncated multipart body");
	p->pp = NULL;
	if (p->status) {
		gd_reply_problem(r, p->status, p->err.msg);
		goto out;
	}
	if (!p->meta.len) {
		gd_reply_problem(r, 400, "the 'metadata' part is missing");
		goto out;
	}
	if (!p->up) {
		gd_reply_problem(r, 400, "the 'artifact' part is missing");
		goto out;
	}
	if (gn_json_parse(&meta, p->meta.data, p->meta.len, (int)atomic_load(&gd.max_json_depth), &err) ||
	    model_meta_check(&m, meta, &err)) {
		gd_reply_problem(r, 400, err.msg);
		goto out;
	}
	if (artifacts_finish(p->up, digest, &length, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	if (m.stated_sha256[0] && strcmp(m.stated_sha256, digest) != 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "artifact SHA-256 is %s, the metadata states %s; nothing was stored", digest,
			 m.stated_sha256);
		gd_reply_problem(r, 400, msg);
		goto out;
	}
	if (m.stated_length >= 0 && (uint64_t)m.stated_length != length) {
		char msg[256];
		snprintf(msg, sizeof(msg), "artifact is %llu bytes, the metadata states %lld; nothing was stored",
			 (unsigned long long)length, (long long)m.stated_length);
		gd_reply_problem(r, 400, msg);
		goto out;
	}
	/* The stored metadata, and digests of the exact bytes of the sample and profile as stored. */
	stored = json_object();
	static const char *const keep[] = {"requirements", "inputs", "outputs", "provenance"};
	for (size_t i = 0; i < GN_ARRAY_LEN(keep); i++) {
		json_t *v = json_object_get(meta, keep[i]);
		json_object_set(stored, keep[i], v ? v : json_null());
	}
	json_t *sample = json_object_get(meta, "sample"), *profile = json_object_get(meta, "reference_profile");
	if (sample) {
		sample_bytes = json_dumps(sample, JSON_COMPACT | JSON_SORT_KEYS);
		gn_sha256_hex(sample_sha, sample_bytes, strlen(sample_bytes));
	}
	if (profile && !json_is_null(profile)) {
		profile_bytes = json_dumps(profile, JSON_COMPACT | JSON_SORT_KEYS);
		gn_sha256_hex(profile_sha, profile_bytes, strlen(profile_bytes));
	}
	custom = target_custom(name, &m, meta, sample ? sample_sha : NULL, profile_bytes ? profile_sha : NULL);
	s_stored = json_dumps(stored, JSON_COMPACT | JSON_SORT_KEYS);
	s_custom = gn_json_dump(custom);
	/* Every device downloads targets metadata listing every version: keep each entry small. */
	if (strlen(s_custom) > MAX_TARGET_CUSTOM) {
		char msg[200];
		snprintf(msg, sizeof(msg), "requirements, inputs and outputs take %zu bytes in the signed metadata; at most %d",
			 strlen(s_custom), MAX_TARGET_CUSTOM);
		gd_reply_problem(r, 400, msg);
		goto out;
	}
	snprintf(len, sizeof(len), "%llu", (unsigned long long)length);
	snprintf(maj, sizeof(maj), "%lld", (long long)m.semver.major);
	snprintf(min, sizeof(min), "%lld", (long long)m.semver.minor);
	snprintf(pat, sizeof(pat), "%lld", (long long)m.semver.patch);

	db_conn *c = gd_db(r);
	const char *pm[] = {name};
	const char *pd[] = {digest};
	const char *pv[] = {name, m.version, maj, min, pat, m.semver.prerelease, m.format, m.filename, digest, len,
			    s_stored, s_custom, r->actor.name, sample_bytes, profile_bytes, m.semver.prerelease_key};
	if (db_exec_sql(c, "BEGIN", &err) || db_exec(NULL, c, &st_model_insert, pm, &err) ||
	    db_exec(NULL, c, &st_digest_lock, pd, &err) || db_exec(NULL, c, &st_version_insert, pv, &err)) {
		if (err.code == GN_ECONFLICT)
			snprintf(err.msg, sizeof(err.msg), "%s version %s is already published; versions are immutable", name, m.version);
		gd_reply_error(r, &err);
		goto out;
	}
	/* The file goes into place before the row commits: no row ever points at a missing file. */
	artifact_upload *up = p->up;
	p->up = NULL;
	if (artifacts_commit(up, &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	committed_file = true;
	const char *pg[] = {name, m.version};
	char object[200];
	snprintf(object, sizeof(object), "%s@%s", name, m.version);
	if (tufrepo_publish_targets(c, &err) ||
	    audit_write(gd_db(r), &r->actor, "model.publish", "model_version", object,
			json_pack("{s:s,s:s,s:s,s:I}", "model", name, "version", m.version, "sha256", digest, "length",
				  (json_int_t)length),
			&err) ||
	    db_exec(&res, c, &st_version_get, pg, &err) || db_exec_sql(c, "COMMIT", &err)) {
		gd_reply_error(r, &err);
		goto out;
	}
	committed_file = false;
	gn_log(GN_LOG_INFO, "event=model_published model=%s version=%s sha256=%s length=%llu", name, m.version, digest,
	       (unsigned long long)length);
	gd_reply_raw(r, 201, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
out:
	if (r->status >= 400 && r->db)
		db_exec_sql_logged(r->db, "ROLLBACK");
	if (committed_file)
		drop_if_unused(gd_db(r), digest);
	PQclear(res);
	json_decref(meta);
	json_decref(stored);
	json_decref(custom);
	free(s_stored);
	free(s_custom);
	free(sample_bytes);
	free(profile_bytes);
	publish_free(r);
}

/* --- reading ------------------------------------------------------------------------------ */

void http_models_list(struct gd_req *r)
{
	gd_list(r, &st_list, CURSOR_TEXT, NULL, 0);
}

static void reply_one(struct gd_req *r, const db_stmt *st, const char *const *p, const char *missing)
{
	PGresult *res = NULL;
	gn_err err;
	if (db_exec(&res, gd_db(r), st, p, &err)) {
		gd_reply_error(r, &err);
		return;
	}
	if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0))
		gd_reply_problem(r, 404, missing);
	else
		gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
	PQclear(res);
}

void http_models_get(struct gd_req *r)
{
	const char *p[] = {gd_param(r, 0)};
	reply_one(r, &st_model_get, p, "no such model");
}

void http_models_version_get(struct gd_req *r)
{
	const char *p[] = {gd_param(r, 0), gd_param(r, 1)};
	reply_one(r, &st_version_get, p, "no such model version or alias");
}

static const db_stmt st_sample = {
	"models_sample",
	"SELECT sample_json FROM model_versions WHERE model = $1 AND version ="
	" coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
	2};
static const db_stmt st_profile = {
	"models_profile",
	"SELECT profile_json FROM model_versions WHERE model = $1 AND version ="
	" coalesce((SELECT version FROM model_aliases WHERE model = $1 AND alias = $2), $2)",
	2};

void http_models_sample_get(struct gd_req *r)
{
	const char *p[] = {gd_param(r, 0), gd_param(r, 1)};
	reply_one(r, &st_sample, p, "no such model version, or it has no sample");
}

void http_models_profile_get(struct gd_req *r)
{
	const char *p[] = {gd_param(r, 0), gd_param(r, 1)};
	reply_one(r, &st_profile, p, "no such model version, or it has no reference profile");
}

/* --- aliases ------------------------------------------------------------------------------ */

static const gn_json_field alias_fields[] = {{"version", GN_JSON_STRING, true, false}};

void http_models_alias_set(struct gd_req *r)
{
	json_t *body = NULL;
	PGresult *res = NULL;
	gn_err err;
	const char *name = gd_param(r, 0), *alias = gd_param(r, 1);
	if (model_alias_check(alias, &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	if (gd_body_json(&body, r, alias_fields, 1))
		return;
	const char *version = gn_json_str(body, "version");
	const char *p[] = {name, alias, version};
	if (gd_audit_change(&res, r, &st_alias_set, p, "no such model version", "model.alias", "model", name,
			 json_pack("{s:s,s:s}", "alias", alias, "version", version)))
		goto out;
	gd_reply_raw(r, 200, "application/json", PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0));
out:
	PQclear(res);
	json_decref(body);
}

void http_models_alias_delete(struct gd_req *r)
{
	PGresult *res = NULL;
	const char *name = gd_param(r, 0), *alias = gd_param(r, 1);
	const char *p[] = {name, alias};
	if (gd_audit_change(&res, r, &st_alias_delete, p, "no such alias", "model.alias_delete", "model", name,
			 json_pack("{s:s}", "alias", alias)))
		return;
	gd_reply_raw(r, 204, NULL, "", 0);
	PQclear(res);
}
