/* /v1/models: the model registry's handlers over models.c. Publishing streams the multipart
 * body: the metadata part is checked as soon as the artifact part starts, and the artifact goes to
 * the content-addressed store while it is hashed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http.h"
#include "log.h"
#include "model_meta.h"
#include "models.h"
#include "npy.h"

/* --- publishing ------------------------------------------------------------------------------ */

struct publish {
	struct MHD_PostProcessor *pp;
	gn_buf meta;
	struct models_artifact art;
	struct models_sample_file samples[MODELS_MAX_SAMPLE_FILES];
	size_t nsamples;
	bool meta_checked;
	char *part; /* the part being received */
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
	gn_err err;
	const struct gd_config *cfg = config_get();
	p->meta_checked = true;
	if (!p->meta.len)
		return 0;
	int rc = models_upload_check(gd_db(r), gd_param(r, 0), p->meta.data, p->meta.len, (int)cfg->max_json_depth,
				     cfg->max_artifact_size, &err);
	/* Uploads can take long: hold no pooled connection while the bytes stream in. */
	gd_db_release(r);
	if (rc) {
		publish_fail(p, gd_http_status(err.code), err.msg);
		return -1;
	}
	return 0;
}

/* A 'sample' part: one .npy tensor file of the sample, stored like the artifact; its first bytes
 * (the header) are kept for models_publish to check. */
static enum MHD_Result on_sample_part(struct gd_req *r, struct publish *p, const char *data, uint64_t off, size_t size)
{
	gn_err err;
	int64_t max = config_get()->max_sample_size;
	if (!p->meta_checked && early_check(r, p))
		return MHD_NO;
	if (off == 0) {
		if (p->nsamples == MODELS_MAX_SAMPLE_FILES) {
			publish_fail(p, 400, "more than 64 'sample' parts");
			return MHD_NO;
		}
		struct models_sample_file *f = &p->samples[p->nsamples];
		gn_buf_init(&f->head);
		if (artifacts_begin(&f->up, &err)) {
			publish_fail(p, 500, err.msg);
			return MHD_NO;
		}
		p->nsamples++;
	}
	struct models_sample_file *f = &p->samples[p->nsamples - 1];
	if (f->head.len < GN_NPY_HEADER_MAX)
		gn_buf_append(&f->head, data,
			      size < GN_NPY_HEADER_MAX - f->head.len ? size : GN_NPY_HEADER_MAX - f->head.len);
	if (size && artifacts_write(f->up, data, size, (uint64_t)max, &err)) {
		char msg[160];
		snprintf(msg, sizeof(msg), "sample file %zu is larger than %lld bytes (max-sample-size)", p->nsamples,
			 (long long)max);
		publish_fail(p, gd_http_status(err.code), err.code == GN_ETOOBIG ? msg : err.msg);
		return MHD_NO;
	}
	return MHD_YES;
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
			       const char *content_type, const char *transfer_encoding, const char *data, uint64_t off,
			       size_t size)
{
	struct gd_req *r = cls;
	struct publish *p = gd_stream_ctx(r);
	gn_err err;
	if (p->status)
		return MHD_NO;
	if (!key) { /* a part without Content-Disposition: libmicrohttpd has no name for it */
		publish_fail(p, 400, "a form part without a name (Content-Disposition: form-data; name=...)");
		return MHD_NO;
	}
	if (strcmp(key, "metadata") == 0) {
		int64_t max = config_get()->max_release_metadata;
		if (p->meta.len + size > (size_t)max) {
			char msg[160];
			snprintf(msg, sizeof(msg), "the metadata part is larger than %lld bytes (max-release-metadata)",
				 (long long)max);
			publish_fail(p, 413, msg);
			return MHD_NO;
		}
		gn_buf_append(&p->meta, data, size);
		return MHD_YES;
	}
	if (strcmp(key, "sample") == 0)
		return on_sample_part(r, p, data, off, size);
	if (strcmp(key, "artifact") != 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "unknown form part '%.64s' (expected 'metadata', 'artifact' and 'sample')",
			 key);
		publish_fail(p, 400, msg);
		return MHD_NO;
	}
	if (off == 0 && p->art.up) {
		publish_fail(p, 400, "more than one 'artifact' part");
		return MHD_NO;
	}
	if (!p->meta_checked && early_check(r, p))
		return MHD_NO;
	if (!p->art.up) {
		if (models_artifact_begin(&p->art, &err)) {
			publish_fail(p, 500, err.msg);
			return MHD_NO;
		}
	}
	if (size && models_artifact_write(&p->art, data, size, (uint64_t)config_get()->max_artifact_size, &err)) {
		if (err.code == GN_ETOOBIG)
			snprintf(err.msg, sizeof(err.msg), "the artifact is larger than %lld bytes (max-artifact-size)",
				 (long long)config_get()->max_artifact_size);
		publish_fail(p, gd_http_status(err.code), err.msg);
		return MHD_NO;
	}
	return MHD_YES;
}

static int publish_begin(struct gd_req *r)
{
	gn_err err;
	const char *ct = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *cl = MHD_lookup_connection_value(gd_connection(r), MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const struct gd_config *cfg = config_get();
	int64_t max = cfg->max_artifact_size + cfg->max_release_metadata +
		      MODELS_MAX_SAMPLE_FILES * cfg->max_sample_size + (MODELS_MAX_SAMPLE_FILES + 2) * 1024;
	if (gd_rate_limit(r, "upload", gd_actor(r)->id))
		return -1;
	if (model_name_check(gd_param(r, 0), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return -1;
	}
	if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0) {
		gd_reply_problem(r, 415,
				 "publish with multipart/form-data: a 'metadata' part, then an 'artifact' part");
		return -1;
	}
	if (cl && strtoll(cl, NULL, 10) > max) {
		char msg[320];
		snprintf(msg, sizeof(msg),
			 "upload of %lld bytes is larger than max-artifact-size (%lld) + max-release-metadata (%lld) + "
			 "64 sample files of max-sample-size (%lld)",
			 strtoll(cl, NULL, 10), (long long)cfg->max_artifact_size, (long long)cfg->max_release_metadata,
			 (long long)cfg->max_sample_size);
		gd_reply_problem(r, 413, msg);
		return -1;
	}
	struct publish *p = gn_calloc(1, sizeof(*p));
	gn_buf_init(&p->meta);
	gd_set_stream_ctx(r, p);
	p->pp = MHD_create_post_processor(gd_connection(r), 256 * 1024, on_part, r);
	if (!p->pp) {
		gd_reply_problem(r, 400, "cannot read the multipart body (missing boundary?)");
		return -1;
	}
	return 0;
}

static int publish_data(struct gd_req *r, const char *buf, size_t len)
{
	struct publish *p = gd_stream_ctx(r);
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
	struct publish *p = gd_stream_ctx(r);
	if (!p)
		return;
	if (p->pp)
		MHD_destroy_post_processor(p->pp);
	models_artifact_cleanup(&p->art);
	for (size_t i = 0; i < p->nsamples; i++) {
		artifacts_abort(p->samples[i].up);
		gn_buf_cleanup(&p->samples[i].head);
	}
	gn_buf_cleanup(&p->meta);
	free(p);
	gd_set_stream_ctx(r, NULL);
}

static void publish_abort(struct gd_req *r)
{
	if (gd_stream_ctx(r))
		gn_log(GN_LOG_INFO, "event=upload_aborted model=%s", gd_param(r, 0));
	publish_free(r);
}

static const struct gd_stream http_models_publish_stream = {publish_begin, publish_data, publish_abort};

static void http_models_publish(struct gd_req *r)
{
	struct publish *p = gd_stream_ctx(r);
	struct tuf_settings ts;
	char *out = NULL;
	gn_err err;
	const struct gd_config *cfg = config_get();

	/* Destroying the post processor flushes the last part. */
	if (MHD_destroy_post_processor(p->pp) != MHD_YES && !p->status)
		publish_fail(p, 400, "malformed or truncated multipart body");
	p->pp = NULL;
	if (p->status)
		gd_reply_problem(r, p->status, p->err.msg);
	else if (!p->meta.len)
		gd_reply_problem(r, 400, "the 'metadata' part is missing");
	else if (!p->art.up)
		gd_reply_problem(r, 400, "the 'artifact' part is missing");
	if (gd_answered(r))
		goto out;
	tuf_sign_settings(&ts, cfg);
	if (models_publish(&out, gd_db(r), gd_actor(r), &ts, gd_param(r, 0), p->meta.data, p->meta.len,
			   (int)cfg->max_json_depth, &p->art, p->samples, p->nsamples, &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 201, "application/json", out, strlen(out));
out:
	free(out);
	publish_free(r);
}

/* --- reading ------------------------------------------------------------------------------ */

static void http_models_list(struct gd_req *r)
{
	gd_list(r, &models_list_stmt, CURSOR_TEXT, NULL, 0);
}

static void http_models_get(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = models_get(&out, gd_db(r), gd_param(r, 0), &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void version_part(struct gd_req *r, enum models_part part)
{
	char *out = NULL;
	gn_err err;
	int rc = models_version_get(&out, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), part, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

static void http_models_version_get(struct gd_req *r)
{
	version_part(r, MODELS_VERSION);
}

static void http_models_sample_get(struct gd_req *r)
{
	version_part(r, MODELS_SAMPLE);
}

static void http_models_profile_get(struct gd_req *r)
{
	version_part(r, MODELS_PROFILE);
}

/* --- aliases ------------------------------------------------------------------------------ */

const gn_json_field http_models_alias_fields[] = {{"version", GN_JSON_STRING, true, false}};
const size_t http_models_alias_nfields = GN_ARRAY_LEN(http_models_alias_fields);

static void http_models_alias_set(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (model_alias_check(gd_param(r, 1), &err)) {
		gd_reply_problem(r, 400, err.msg);
		return;
	}
	if (gd_body_json(&body, r, http_models_alias_fields, http_models_alias_nfields))
		return;
	int rc = models_alias_set(&out, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1),
				  gn_json_str(body, "version"), &err);
	gd_reply_text(r, rc, 200, out, &err);
	json_decref(body);
}

static void http_models_alias_delete(struct gd_req *r)
{
	gn_err err;
	if (models_alias_delete(gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), &err))
		gd_reply_error(r, &err);
	else
		gd_reply_raw(r, 204, NULL, "", 0);
}

/* --- yanking -------------------------------------------------------------------------------- */

const gn_json_field http_models_yank_fields[] = {{"reason", GN_JSON_STRING, false, false}};
const size_t http_models_yank_nfields = GN_ARRAY_LEN(http_models_yank_fields);

static void http_models_yank(struct gd_req *r)
{
	json_t *body = NULL;
	char *out = NULL;
	gn_err err;
	if (gd_body_json(&body, r, http_models_yank_fields, http_models_yank_nfields))
		return;
	int rc = models_yank(&out, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), true,
			     gn_json_str(body, "reason"), &err);
	gd_reply_text(r, rc, 200, out, &err);
	json_decref(body);
}

static void http_models_unyank(struct gd_req *r)
{
	char *out = NULL;
	gn_err err;
	int rc = models_yank(&out, gd_db(r), gd_actor(r), gd_param(r, 0), gd_param(r, 1), false, NULL, &err);
	gd_reply_text(r, rc, 200, out, &err);
}

const struct gd_route http_models_routes[] = {
	{"GET", "/v1/models", GD_SCOPE_READ, http_models_list, NULL},
	{"GET", "/v1/models/{name}", GD_SCOPE_READ, http_models_get, NULL},
	{"POST", "/v1/models/{name}/versions", GD_SCOPE_CI, http_models_publish, &http_models_publish_stream},
	{"GET", "/v1/models/{name}/versions/{version}", GD_SCOPE_READ | GD_SCOPE_DEVICE, http_models_version_get, NULL},
	{"GET", "/v1/models/{name}/versions/{version}/sample", GD_SCOPE_READ | GD_SCOPE_DEVICE, http_models_sample_get,
	 NULL},
	{"GET", "/v1/models/{name}/versions/{version}/reference-profile", GD_SCOPE_READ | GD_SCOPE_DEVICE,
	 http_models_profile_get, NULL},
	{"PUT", "/v1/models/{name}/aliases/{alias}", GD_SCOPE_CI | GD_SCOPE_OPERATOR, http_models_alias_set, NULL},
	{"DELETE", "/v1/models/{name}/aliases/{alias}", GD_SCOPE_CI | GD_SCOPE_OPERATOR, http_models_alias_delete,
	 NULL},
	{"PUT", "/v1/models/{name}/versions/{version}/yank", GD_SCOPE_CI | GD_SCOPE_OPERATOR, http_models_yank, NULL},
	{"DELETE", "/v1/models/{name}/versions/{version}/yank", GD_SCOPE_CI | GD_SCOPE_OPERATOR, http_models_unyank,
	 NULL},
};
const size_t http_models_nroutes = GN_ARRAY_LEN(http_models_routes);
