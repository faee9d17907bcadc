/* ganglion models: publish model versions (a streamed multipart upload), list and show models
 * and versions, and point aliases at versions. */
#include "cli.h"
#include "cmd_telemetry.h"
#include "release.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto.h"
#include "http_client.h"
#include "json.h"
#include "model.h"
#include "npy.h"
#include "onnx.h"
#include "requirements.h"

#define PROGRESS_INTERVAL_NS 100000000ULL      /* redraw at most ten times a second on a terminal */
#define PROGRESS_LOG_INTERVAL_NS 5000000000ULL /* elsewhere (a CI log), a line every 5 seconds */
/* The connection must be up within this long; the transfer itself has no time limit. */
#define CONNECT_TIMEOUT_S 10L
/* An upload slower than LOW_SPEED_LIMIT bytes/s for LOW_SPEED_TIME_S is given up. */
#define LOW_SPEED_LIMIT 1024L
#define LOW_SPEED_TIME_S 60L
#define UPLOAD_MAX_RESPONSE ((size_t)16 * 1024 * 1024)

/* Returns member key of member sub of row, formatted for a cell (new). */
static char *nested_dup(const json_t *row, const char *sub, const char *key)
{
	return output_value_dup(json_object_get(json_object_get(row, sub), key));
}

static char *artifact_sha256(const json_t *row)
{
	return nested_dup(row, "artifact", "sha256");
}

static char *artifact_length(const json_t *row)
{
	return nested_dup(row, "artifact", "length");
}

static char *artifact_url(const json_t *row)
{
	return nested_dup(row, "artifact", "url");
}

static const output_col pushed_fields[] = {
	{"Model", "model", NULL},          {"Version", "version", NULL},      {"Format", "format", NULL},
	{"SHA256", NULL, artifact_sha256}, {"Length", NULL, artifact_length}, {"Target", "target", NULL},
};

/* "yes", or why there is none; a yank as "TIME by WHO: REASON"; "" when not yanked. */
static char *self_test_text(const json_t *row)
{
	return gn_strdup(json_is_false(json_object_get(row, "self_test")) ? "none (published with no_self_test)"
									  : "yes");
}

static char *yanked_text(const json_t *row)
{
	const json_t *y = json_object_get(row, "yanked");
	const char *reason = gn_json_str(y, "reason");
	if (!json_is_object(y))
		return gn_strdup("");
	return gn_asprintf("%s by %s%s%s", gn_json_str(y, "at"), gn_json_str(y, "by"), reason ? ": " : "",
			   reason ? reason : "");
}

static char *yanked_flag(const json_t *row)
{
	return gn_strdup(json_is_object(json_object_get(row, "yanked")) ? "yanked" : "");
}

static char *self_test_flag(const json_t *row)
{
	return gn_strdup(json_is_false(json_object_get(row, "self_test")) ? "no" : "yes");
}

static const output_col version_fields[] = {
	{"Model", "model", NULL},
	{"Version", "version", NULL},
	{"Format", "format", NULL},
	{"Filename", "filename", NULL},
	{"SHA256", NULL, artifact_sha256},
	{"Length", NULL, artifact_length},
	{"URL", NULL, artifact_url},
	{"Target", "target", NULL},
	{"Published", "published_at", NULL},
	{"Published by", "published_by", NULL},
	{"Self-test", NULL, self_test_text},
	{"Yanked", NULL, yanked_text},
	{"Requirements", "requirements", NULL},
	{"Inputs", "inputs", NULL},
	{"Outputs", "outputs", NULL},
	{"Provenance", "provenance", NULL},
};

static const output_col list_cols[] = {
	{"NAME", "name", NULL},       {"LATEST", "latest_version", NULL}, {"VERSIONS", "versions", NULL},
	{"ALIASES", "aliases", NULL}, {"CREATED", "created_at", NULL},
};

static const output_col model_fields[] = {
	{"Name", "name", NULL},
	{"Created", "created_at", NULL},
	{"Aliases", "aliases", NULL},
};

static const output_col model_version_cols[] = {
	{"VERSION", "version", NULL},        {"FORMAT", "format", NULL},
	{"SHA256", "sha256", NULL},          {"LENGTH", "length", NULL},
	{"PUBLISHED", "published_at", NULL}, {"PUBLISHED BY", "published_by", NULL},
	{"SELF-TEST", NULL, self_test_flag}, {"STATE", NULL, yanked_flag},
};

/* Progress on stderr for hashing and uploading: on a terminal one line redrawn in place; else
 * (a CI log) a plain line every few seconds and one when done. */
typedef struct progress {
	const char *what;
	uint64_t start_ns, last_ns, last_done;
	bool shown, done, tty;
} progress;

static void progress_start(progress *p, const char *what, bool tty)
{
	*p = (progress){.what = what, .start_ns = gn_mono_ns(), .last_ns = gn_mono_ns(), .tty = tty};
}

/* Formats a byte count with SI units, as the MB/s rate is. */
static void fmt_bytes(char *out, size_t n, uint64_t v)
{
	if (v < 1000)
		snprintf(out, n, "%llu B", (unsigned long long)v);
	else if (v < 1000 * 1000)
		snprintf(out, n, "%.1f kB", (double)v / 1e3);
	else if (v < 1000ULL * 1000 * 1000)
		snprintf(out, n, "%.1f MB", (double)v / 1e6);
	else
		snprintf(out, n, "%.2f GB", (double)v / 1e9);
}

static void progress_update(void *ud, uint64_t done, uint64_t total)
{
	progress *p = ud;
	uint64_t now = gn_mono_ns();
	char a[32], b[32];
	double secs;

	if (total == 0 || p->done)
		return;
	if (p->tty && done < total && p->shown && (done == p->last_done || now - p->last_ns < PROGRESS_INTERVAL_NS))
		return;
	if (!p->tty && done < total && now - p->last_ns < PROGRESS_LOG_INTERVAL_NS)
		return;
	if (done > total)
		done = total;
	secs = (double)(now - p->start_ns) / 1e9;
	fmt_bytes(a, sizeof(a), done);
	fmt_bytes(b, sizeof(b), total);
	/* On a terminal, \033[K clears what a longer earlier line left behind. */
	fprintf(stderr, "%s%s %3u%%  %s / %s  %.1f MB/s%s", p->tty ? "\r" : "", p->what, (unsigned)(done * 100 / total),
		a, b, secs > 0 ? (double)done / secs / 1e6 : 0.0, p->tty ? "\033[K" : "\n");
	p->last_ns = now;
	p->last_done = done;
	p->shown = true;
	p->done = done == total;
}

/* Ends the progress line, so what follows starts on a line of its own. */
static void progress_end(progress *p)
{
	if (p->shown && p->tty)
		fputc('\n', stderr);
	p->shown = false;
}

/* Computes the file's SHA-256 and length (lib), showing progress; a bad path is a usage error. */
static int hash_file(char hex[GN_SHA256_HEX_LEN + 1], uint64_t *len, const char *path, progress *p, gn_err *err)
{
	int error = gn_sha256_file(hex, len, path, p ? progress_update : NULL, p, err);
	if (error == GN_ENOTFOUND || error == GN_EINVAL)
		err->code = error = CLI_EUSAGE;
	return error;
}

/* The naming rules are lib/model.c's, the server's own; here a broken one is a usage error. */
static int usage_if(int error, gn_err *err)
{
	if (error)
		err->code = error = CLI_EUSAGE;
	return error;
}

static int check_name(const char *name, gn_err *err)
{
	return usage_if(gn_model_name_check(name, err), err);
}

static int check_version(const char *v, gn_err *err)
{
	struct gn_semver sv;
	return usage_if(gn_model_version_parse(&sv, v, err), err);
}

static int check_format(const char *f, gn_err *err)
{
	const struct gn_model_format *fmt;
	return usage_if(gn_model_format_lookup(&fmt, f, err), err);
}

static int check_filename(const char *f, gn_err *err)
{
	return usage_if(gn_model_filename_check(f, err), err);
}

/* Returns string member key of meta (borrowed) after checking its type; NULL if absent. */
static int meta_str(const char **out, const json_t *meta, const char *key, const char *path, gn_err *err)
{
	const json_t *v = json_object_get(meta, key);
	*out = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v))
		return gn_err_set(err, CLI_EUSAGE, "%s: \"%s\" must be a string", path, key);
	*out = json_string_value(v);
	return 0;
}

/* Loads the metadata part: the --meta file's object, then the flags over it, checked. */
static int load_metadata(json_t **out, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *meta_path = cli_args_get(args, "meta"), *s;
	static const char *const keys[] = {"version", "format", "filename"};
	int (*const checks[])(const char *, gn_err *) = {check_version, check_format, check_filename};
	json_t *meta = NULL;

	if (meta_path) {
		/* No cap here: the server says how much it takes (max-release-metadata, 413 beyond). */
		if ((error = cli_read_json_file(&meta, meta_path, SIZE_MAX, err)))
			goto out;
		if (!json_is_object(meta)) {
			error = gn_err_set(err, CLI_EUSAGE, "%s must hold a JSON object", meta_path);
			goto out;
		}
	} else {
		meta = json_object();
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(keys); i++) {
		const char *flag = cli_args_get(args, keys[i]);
		if (flag)
			json_object_set_new(meta, keys[i], json_string(flag));
		if ((error = meta_str(&s, meta, keys[i], meta_path, err)))
			goto out;
		if (s && (error = checks[i](s, err)))
			goto out;
	}
	/* The server's rules (lib/requirements.c), before the artifact travels. */
	gn_err rq;
	if (json_object_get(meta, "requirements") &&
	    gn_requirements_check(json_object_get(meta, "requirements"), &rq)) {
		error = gn_err_set(err, CLI_EUSAGE, "%s: %s", meta_path ? meta_path : "--meta", rq.msg);
		goto out;
	}
	if (!json_object_get(meta, "version")) {
		error = gn_err_set(err, CLI_EUSAGE, "--version is required (or \"version\" in the --meta file)");
		goto out;
	}
	if (cli_args_get(args, "no-self-test"))
		json_object_set_new(meta, "no_self_test", json_true());
	/* The server's rule, checked before hashing what may be gigabytes. */
	if (!json_object_get(meta, "sample") && !json_is_true(json_object_get(meta, "no_self_test"))) {
		error = gn_err_set(
			err, CLI_EUSAGE,
			"no sample: devices self-test a release on the sample in the --meta file (\"sample\": "
			"inputs and expected outputs) before they swap it in; add one, or say --no-self-test");
		goto out;
	}
	*out = meta;
	meta = NULL;
out:
	json_decref(meta);
	return error;
}

/* Puts the file's digest and length into meta; a different one already there is what the file
 * was expected to be, so a mismatch means the wrong file. */
static int add_digest(json_t *meta, const char *meta_path, const char *file, const char *hex, uint64_t len, gn_err *err)
{
	int error = 0;
	const char *s;
	const json_t *v = json_object_get(meta, "length");

	if ((error = meta_str(&s, meta, "sha256", meta_path, err)))
		return error;
	if (s && strcasecmp(s, hex) != 0)
		return gn_err_set(err, CLI_EUSAGE, "%s says sha256 %s but %s has %s", meta_path, s, file, hex);
	if (v && !json_is_integer(v))
		return gn_err_set(err, CLI_EUSAGE, "%s: \"length\" must be an integer", meta_path);
	if (v && (json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) != len))
		return gn_err_set(err, CLI_EUSAGE, "%s says length %lld but %s has %llu bytes", meta_path,
				  (long long)json_integer_value(v), file, (unsigned long long)len);
	json_object_set_new(meta, "sha256", json_string(hex));
	json_object_set_new(meta, "length", json_integer((json_int_t)len));
	return 0;
}

/* The sample tensor files a push sends: one 'sample' part per distinct file. */
/* The sample tensor files a push sends: one 'sample' part per distinct file, a .npy file streamed
 * from disk (path) or a member of a .npz archive held in memory (data). */
struct sample_files {
	size_t n;
	char *path[64], *data[64];
	size_t len[64];
	char hex[64][GN_SHA256_HEX_LEN + 1];
};

static void sample_files_cleanup(struct sample_files *sf)
{
	for (size_t i = 0; i < sf->n; i++) {
		free(sf->path[i]);
		free(sf->data[i]);
	}
	sf->n = 0;
}

/* Checks that path holds a .npy file numpy writes and that the reader on the devices accepts. */
static int check_npy(const char *path, uint64_t len, gn_err *err)
{
	char head[GN_NPY_HEADER_MAX];
	gn_npy n;
	gn_err e;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got = fd < 0 ? -1 : read(fd, head, sizeof(head));
	if (fd >= 0)
		close(fd);
	if (got < 0)
		return gn_err_set(err, CLI_EUSAGE, "cannot read %s: %s", path, strerror(errno));
	if (gn_npy_header_parse(&n, head, (size_t)got, len, &e))
		return gn_err_set(err, CLI_EUSAGE, "%s: %s", path, e.msg);
	if (n.header_len + n.data_len != len)
		return gn_err_set(err, CLI_EUSAGE, "%s: %llu bytes, its .npy header says %llu", path,
				  (unsigned long long)len, (unsigned long long)(n.header_len + n.data_len));
	return 0;
}

/* Reads tensor's array (member TENSOR.npy, as numpy.savez names it) from the .npz at path into
 * *out (new), checked as a .npy. */
static int npz_member(char **out, size_t *out_len, const char *path, const char *tensor, gn_err *err)
{
	char *zip = NULL, member[300];
	size_t zlen = 0, mlen = 0;
	const unsigned char *m;
	gn_npy n;
	gn_err e;
	if (gn_file_read(&zip, &zlen, path, SIZE_MAX - 1, &e))
		return gn_err_set(err, CLI_EUSAGE, "%s", e.msg);
	int error = 0;
	snprintf(member, sizeof(member), "%s.npy", tensor);
	if (gn_npz_member(&m, &mlen, zip, zlen, member, &e) || gn_npy_parse(&n, m, mlen, mlen, &e)) {
		error = gn_err_set(err, CLI_EUSAGE, "%s: %s", path, e.msg);
	} else {
		*out = gn_malloc(mlen);
		memcpy(*out, m, mlen);
		*out_len = mlen;
	}
	free(zip);
	return error;
}

/* Replaces each sample tensor given as a file name (relative to the --meta file's directory) by
 * {"format": "npy", "sha256", "length"}, and lists the files to send: a .npy file is the tensor;
 * in a .npz file (numpy.savez), the tensor is the member of the tensor's name. */
static int resolve_sample_files(struct sample_files *sf, json_t *meta, const char *meta_path, gn_err *err)
{
	static const char *const lists[] = {"inputs", "outputs"};
	const char *slash = meta_path ? strrchr(meta_path, '/') : NULL;
	int dirlen = slash ? (int)(slash - meta_path) : 0;
	int error = 0;
	for (size_t l = 0; l < GN_ARRAY_LEN(lists); l++) {
		const char *k;
		json_t *v, *obj = json_object_get(json_object_get(meta, "sample"), lists[l]);
		if (!json_is_object(obj))
			continue;
		json_object_foreach(obj, k, v) {
			if (!json_is_string(v))
				continue;
			const char *f = json_string_value(v);
			size_t flen = strlen(f);
			char *path =
				f[0] == '/' || !slash ? gn_strdup(f) : gn_asprintf("%.*s/%s", dirlen, meta_path, f);
			char hex[GN_SHA256_HEX_LEN + 1], *data = NULL;
			uint64_t len = 0;
			if (flen > 4 && strcmp(f + flen - 4, ".npz") == 0) {
				size_t dlen = 0;
				if (!(error = npz_member(&data, &dlen, path, k, err))) {
					gn_sha256_hex(hex, data, dlen);
					len = dlen;
				}
				free(path);
				path = NULL;
			} else if (!(error = hash_file(hex, &len, path, NULL, err))) {
				error = check_npy(path, len, err);
			}
			size_t i = 0;
			while (!error && i < sf->n && strcmp(sf->hex[i], hex) != 0)
				i++;
			if (!error && i == sf->n && sf->n == GN_ARRAY_LEN(sf->path))
				error = gn_err_set(err, CLI_EUSAGE, "more than %zu sample files",
						   GN_ARRAY_LEN(sf->path));
			if (!error && i == sf->n) {
				sf->path[sf->n] = path;
				sf->data[sf->n] = data;
				sf->len[sf->n] = (size_t)len;
				memcpy(sf->hex[sf->n++], hex, sizeof(hex));
				path = data = NULL;
			}
			free(path);
			free(data);
			if (error)
				return error;
			json_object_set_new(
				obj, k,
				json_pack("{s:s,s:s,s:I}", "format", "npy", "sha256", hex, "length", (json_int_t)len));
		}
	}
	return 0;
}

/* Returns /v1/models/{name} with name URL-encoded, followed by suffix (new). */
static char *model_path(const char *name, const char *suffix)
{
	char *esc = gn_http_escape(name);
	char *path = gn_asprintf("/v1/models/%s%s", esc, suffix);
	free(esc);
	return path;
}

/* For a signed push: *out is the stored version of name that meta names (new) when it has exactly
 * this file's bytes (an earlier push uploaded it, then its release failed, e.g. with a wrong key),
 * so that this push only releases it; NULL when there is no such version. GN_ECONFLICT when the
 * version is stored with other bytes (versions are immutable). */
static int stored_same(json_t **out, const cli_ctx *ctx, const char *name, const json_t *meta, const char *hex,
		       uint64_t len, gn_err *err)
{
	const char *version = gn_json_str(meta, "version");
	json_t *ver = NULL;
	*out = NULL;
	if (!version) /* the upload's refusal says what is missing */
		return 0;
	char *esc = gn_http_escape(version), *suffix = gn_asprintf("/versions/%s", esc),
	     *path = model_path(name, suffix);
	int error = cli_request(&ver, ctx, "GET", path, NULL, err);
	const json_t *a = json_object_get(ver, "artifact");
	const char *got = gn_json_str(ver, "version"), *sha = gn_json_str(a, "sha256");
	if (error == GN_ENOTFOUND) {
		gn_err_clear(err);
		error = 0;
	} else if (!error && got && strcmp(got, version) == 0) { /* (not an alias of that name) */
		if (sha && strcmp(sha, hex) == 0 && json_integer_value(json_object_get(a, "length")) == (json_int_t)len)
			*out = json_incref(ver);
		else
			error = gn_err_set(err, GN_ECONFLICT,
					   "%s version %s is already published with other bytes (SHA-256 %s); versions "
					   "are immutable",
					   name, version, sha ? sha : "?");
	}
	json_decref(ver);
	free(esc);
	free(suffix);
	free(path);
	return error;
}

/* Uploads file as the version of name that meta describes, with the sample files; *out: the
 * server's answer (new). */
static int upload(json_t **out, const cli_ctx *ctx, const char *name, const char *file, const json_t *meta,
		  const struct sample_files *samples, progress *prog, bool show, gn_err *err)
{
	int error = 0;
	bool tty = isatty(STDERR_FILENO);
	char *meta_text = NULL, *path = NULL, *url = NULL;
	gn_http_resp resp = {0};

	meta_text = gn_json_dump(meta);
	gn_http_part parts[2 + GN_ARRAY_LEN(samples->path)] = {
		{.name = "metadata",
		 .content_type = "application/json",
		 .data = meta_text,
		 .data_len = strlen(meta_text)},
		{.name = "artifact",
		 .content_type = "application/octet-stream",
		 .path = file,
		 .filename = gn_json_str(meta, "filename")},
	};
	for (size_t i = 0; i < samples->n; i++)
		parts[2 + i] = (gn_http_part){.name = "sample",
					      .content_type = "application/octet-stream",
					      .data = samples->data[i],
					      .data_len = samples->data[i] ? samples->len[i] : 0,
					      .path = samples->path[i],
					      .filename = "sample.npy"};
	path = model_path(name, "/versions");
	url = gn_asprintf("%s%s", ctx->url, path);
	gn_http_upload up = {
		.url = url,
		.token = ctx->token,
		.parts = parts,
		.nparts = 2 + samples->n,
		.connect_timeout_s = ctx->timeout_s < CONNECT_TIMEOUT_S ? ctx->timeout_s : CONNECT_TIMEOUT_S,
		.low_speed_limit = LOW_SPEED_LIMIT,
		.low_speed_time_s = LOW_SPEED_TIME_S,
		.max_response = UPLOAD_MAX_RESPONSE,
		.progress = show ? progress_update : NULL,
		.progress_ud = prog,
		.ca_file = ctx->ca_file,
		.client_cert = ctx->client_cert,
		.client_key = ctx->client_key,
	};
	progress_start(prog, "uploading", tty);
	error = gn_http_upload_multipart(&resp, &up, err);
	progress_end(prog);
	if (error) {
		if (error == GN_ETOOBIG) /* our own limit on the answer, not a 413 */
			err->code = error = GN_ERROR;
		goto out;
	}
	error = cli_answer(out, ctx, "POST", url, &resp, err);
out:
	gn_http_resp_cleanup(&resp);
	free(meta_text);
	free(path);
	free(url);
	return error;
}

/* The default-domain opset the ONNX model at path declares (lib/onnx.c); GN_ENOTFOUND when it
 * declares none, GN_EINVAL when it is not an ONNX model, CLI_EUSAGE when it cannot be opened. */
static int file_opset(int64_t *opset, const char *path, gn_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return gn_err_set(err, CLI_EUSAGE, "cannot open %s: %s", path, strerror(errno));
	int rc = gn_onnx_opset_fd(opset, fd, err);
	close(fd);
	if (rc && rc != GN_ENOTFOUND) { /* the message names no file */
		char msg[512];
		snprintf(msg, sizeof(msg), "%.500s", err->msg);
		return gn_err_set(err, rc == GN_EINVAL ? CLI_EUSAGE : rc, "%s: %s", path, msg);
	}
	return rc;
}

/* An ONNX release whose requirements leave out its opset gets the one its file declares, so that
 * devices whose runtime cannot run it are refused before they download it; a stated one must be
 * the file's (gn_requirements_opset_reconcile, the rule gangliond applies after the upload: this
 * says so before it). A file that cannot be read as ONNX is left to the devices' load, with a
 * warning, unless an opset is stated for it. */
static int fill_opset(json_t *meta, const char *file, const char *meta_path, gn_err *err)
{
	const char *fmt = gn_json_str(meta, "format");
	int64_t opset = 0;
	gn_err e;
	if (!fmt || strcmp(fmt, "onnx") != 0)
		return 0;
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return gn_err_set(err, CLI_EUSAGE, "cannot open %s: %s", file, strerror(errno));
	int rc = gn_onnx_opset_fd(&opset, fd, &e);
	close(fd);
	bool stated = json_object_get(json_object_get(meta, "requirements"), "opset") != NULL;
	if (rc && rc != GN_ENOTFOUND && !stated) {
		fprintf(stderr, "ganglion: warning: %s: %s; the release's requirements say no opset\n", file, e.msg);
		return 0;
	}
	if (gn_requirements_opset_reconcile(meta, file, rc, opset, rc ? e.msg : "", err)) {
		char msg[GN_ERR_MSG_MAX];
		snprintf(msg, sizeof(msg), "%s", err->msg);
		return gn_err_set(err, CLI_EUSAGE, "%s: %.*s", meta_path ? meta_path : "--meta", (int)sizeof(msg) - 64,
				  msg);
	}
	return 0;
}

static int push_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *file = args->pos[0], *name = cli_args_get(args, "name");
	bool show = !cli_args_get(args, "no-progress"), tty = isatty(STDERR_FILENO);
	char hex[GN_SHA256_HEX_LEN + 1];
	uint64_t len = 0;
	json_t *meta = NULL, *ver = NULL, *released = NULL;
	struct cli_signers *signers = NULL;
	progress prog;
	struct sample_files samples = {0};

	progress_start(&prog, "hashing  ", tty);
	if (!name) {
		error = gn_err_set(err, CLI_EUSAGE, "--name is required");
		goto out;
	}
	if ((error = check_name(name, err)))
		goto out;
	/* Check everything that can be checked before reading what may be gigabytes. */
	if ((error = load_metadata(&meta, args, err)) ||
	    (error = fill_opset(meta, file, cli_args_get(args, "meta"), err)) ||
	    (error = resolve_sample_files(&samples, meta, cli_args_get(args, "meta"), err)) ||
	    (error = cli_signers_load(&signers, args, err)))
		goto out;
	if (!signers && cli_args_get(args, "first-release")) {
		error = gn_err_set(err, CLI_EUSAGE,
				   "--first-release is for a signed release: give --sign-key or --signer-cmd");
		goto out;
	}
	if ((error = hash_file(hex, &len, file, show ? &prog : NULL, err)))
		goto out;
	progress_end(&prog);
	if ((error = add_digest(meta, cli_args_get(args, "meta"), file, hex, len, err)))
		goto out;
	/* A signed push of bytes already stored only releases them: the same command finishes a
	 * release that failed after its upload. */
	if (signers && (error = stored_same(&ver, ctx, name, meta, hex, len, err)))
		goto out;
	if (ver)
		fprintf(stderr, "%s version %s is already published with these bytes: releasing it\n", name,
			gn_json_str(ver, "version"));
	else if ((error = upload(&ver, ctx, name, file, meta, &samples, &prog, show, err)))
		goto out;
	/* Offline targets: the version is released once CI's keys sign it (cli/release.c). */
	if (signers && (error = cli_release_sign(&released, ctx, signers, name, meta, hex, len,
						 cli_args_get(args, "first-release") != NULL, err)))
		goto out;
	if (released)
		json_object_set(ver, "release", released);
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ver);
		goto out;
	}
	printf("Model version published.\n\n");
	output_fields(ver, pushed_fields, GN_ARRAY_LEN(pushed_fields));
	if (released)
		printf("\nReleased: signed role %s version %lld.\n", gn_json_str(released, "role"),
		       (long long)json_integer_value(json_object_get(released, "version")));
out:
	progress_end(&prog);
	json_decref(meta);
	json_decref(ver);
	json_decref(released);
	cli_signers_free(signers);
	sample_files_cleanup(&samples);
	return error;
}

static int list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return cli_list_print(ctx, "/v1/models", list_cols, GN_ARRAY_LEN(list_cols), err);
}

static int show_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *arg = args->pos[0], *at = strchr(arg, '@');
	char *name = gn_strndup(arg, at ? (size_t)(at - arg) : strlen(arg)), *path = NULL, *esc = NULL;
	json_t *ans = NULL, *versions;

	if (at && !at[1]) {
		error = gn_err_set(err, CLI_EUSAGE, "'%s': a version or alias is expected after @", arg);
		goto out;
	}
	if (at) {
		esc = gn_http_escape(at + 1);
		char *suffix = gn_asprintf("/versions/%s", esc);
		path = model_path(name, suffix);
		free(suffix);
	} else {
		path = model_path(name, "");
	}
	if ((error = cli_request(&ans, ctx, "GET", path, NULL, err))) {
		cli_model_not_found(ctx, name, at ? at + 1 : NULL, err);
		error = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	if (at) {
		output_fields(ans, version_fields, GN_ARRAY_LEN(version_fields));
		goto out;
	}
	output_fields(ans, model_fields, GN_ARRAY_LEN(model_fields));
	versions = json_object_get(ans, "versions");
	if (json_array_size(versions) == 0) {
		printf("\nNo versions.\n");
		goto out;
	}
	printf("\n");
	output_table(versions, model_version_cols, GN_ARRAY_LEN(model_version_cols));
out:
	json_decref(ans);
	free(name);
	free(path);
	free(esc);
	return error;
}

static int alias_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	const char *op = args->pos[0];
	bool set = strcmp(op, "set") == 0;
	json_t *body = NULL, *ans = NULL;
	char *esc = NULL, *suffix = NULL, *path = NULL;

	if (!set && strcmp(op, "rm") != 0) {
		error = gn_err_set(err, CLI_EUSAGE, "models alias: expected set or rm, not '%s'", op);
		goto out;
	}
	if (args->npos != (set ? 4u : 3u)) {
		error = gn_err_set(err, CLI_EUSAGE, "models alias %s: expected %s", op,
				   set ? "NAME ALIAS VERSION" : "NAME ALIAS");
		goto out;
	}
	esc = gn_http_escape(args->pos[2]);
	suffix = gn_asprintf("/aliases/%s", esc);
	path = model_path(args->pos[1], suffix);
	if (set)
		body = json_pack("{s:s}", "version", args->pos[3]);
	if ((error = cli_request(&ans, ctx, set ? "PUT" : "DELETE", path, body, err))) {
		/* Set: the model or its version is missing; rm: the model or the alias. */
		if (!cli_model_not_found(ctx, args->pos[1], set ? args->pos[3] : NULL, err) && !set &&
		    err->code == GN_ENOTFOUND)
			gn_err_set(err, GN_ENOTFOUND, "model '%s' has no alias '%s' (HTTP 404)", args->pos[1],
				   args->pos[2]);
		error = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		/* rm answers 204: print nothing and let the exit code speak, as revoke does. */
		if (ans)
			output_json(ans);
		goto out;
	}
	if (set)
		printf("alias %s of model %s now points to version %s\n", args->pos[2], args->pos[1], args->pos[3]);
	else
		printf("alias %s of model %s removed\n", args->pos[2], args->pos[1]);
out:
	json_decref(body);
	json_decref(ans);
	free(esc);
	free(suffix);
	free(path);
	return error;
}

/* models yank NAME VERSION [--reason R] / models unyank NAME VERSION */
static int yank_common(const cli_ctx *ctx, const cli_args *args, bool yank, gn_err *err)
{
	int error = 0;
	const char *name = args->pos[0], *version = args->pos[1], *reason = cli_args_get(args, "reason");
	char *esc = gn_http_escape(version), *suffix = gn_asprintf("/versions/%s/yank", esc);
	char *path = model_path(name, suffix);
	json_t *body = yank ? json_object() : NULL, *ans = NULL;
	if ((error = check_name(name, err)) || (error = check_version(version, err)))
		goto out;
	if (reason)
		json_object_set_new(body, "reason", json_string(reason));
	if ((error = cli_request(&ans, ctx, yank ? "PUT" : "DELETE", path, body, err)))
		goto out;
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else if (yank)
		printf("model %s version %s is yanked: no deployment, alias or assignment may newly target it; "
		       "devices that run it keep it\n",
		       name, version);
	else
		printf("model %s version %s is no longer yanked\n", name, version);
out:
	json_decref(body);
	json_decref(ans);
	free(esc);
	free(suffix);
	free(path);
	return error;
}

static int yank_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return yank_common(ctx, args, true, err);
}

static int unyank_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return yank_common(ctx, args, false, err);
}

static const cli_opt yank_opts[] = {
	{"reason", 0, "TEXT", "why (shown with the version and in refusals; at most 500 bytes)"},
};

static const cli_opt push_opts[] = {
	{"name", 0, "NAME", "the model's name, a lower-case DNS label (required)"},
	{"version", 0, "VERSION", "semantic version, e.g. 1.2.0 (required unless in the --meta file)"},
	{"format", 0, "FORMAT", "onnx, tflite, tensorrt-plan or other (server default: other)"},
	{"meta", 0, "FILE",
	 "JSON object with the other metadata: requirements, inputs, outputs, sample, ... (a sample tensor given "
	 "as a file name is a .npy file beside FILE, or the array of its name in a .npz, sent with the model)"},
	{"filename", 0, "F", "the artifact's file name in the release target (default model.EXT)"},
	{"no-progress", 0, NULL,
	 "no progress on stderr (else a line redrawn on a terminal, or a plain line every 5 seconds and one at 100%)"},
	{"no-self-test", 0, NULL, "publish without a sample: devices install it without a self-test"},
	{"sign-key", 0, "KEY.pem",
	 "with the image targets offline: sign the release with this CI key (Ed25519, PEM); repeat for a threshold"},
	{"signer-cmd", 0, "CMD",
	 "with the image targets offline: sign the release with CMD (a KMS or HSM): it reads the canonical bytes "
	 "on stdin and prints {\"keyid\", \"sig\", \"public\"} (public: its Ed25519 public key in hex) or an array of "
	 "them"},
	{"first-release", 0, NULL,
	 "with --sign-key/--signer-cmd: this is the delegated role's first release (the server has no current "
	 "version of it); without it, a draft saying so is refused"},
};

/* `models opset FILE...`: what push would put into requirements.opset, without a server. */
static int opset_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	int error = 0;
	json_t *rows = json_array();
	for (size_t i = 0; i < args->npos && !error; i++) {
		int64_t opset = 0;
		int rc = file_opset(&opset, args->pos[i], err);
		if (rc && rc != GN_ENOTFOUND)
			error = rc;
		else if (ctx->output == CLI_OUTPUT_JSON)
			json_array_append_new(rows, json_pack("{s:s,s:o}", "file", args->pos[i], "opset",
							      rc ? json_null() : json_integer((json_int_t)opset)));
		else if (rc)
			printf("-\t%s (declares no opset for the default domain)\n", args->pos[i]);
		else
			printf("%lld\t%s\n", (long long)opset, args->pos[i]);
	}
	if (!error && ctx->output == CLI_OUTPUT_JSON)
		output_json(rows);
	json_decref(rows);
	return error;
}

static const cli_cmd cmds[] = {
	{"push", "FILE",
	 "Publish FILE as a new model version (streamed; its SHA-256 and length are sent along, so a "
	 "damaged transfer is refused). Flags override the --meta file, which must carry a sample for the "
	 "devices' self-test unless --no-self-test. An ONNX model's opset is read from FILE into "
	 "requirements.opset unless the metadata states it (a stated one must be the file's). Signed (--sign-key/--signer-cmd), a push of a "
	 "version already published with the same bytes only releases it: run it again to finish a release "
	 "that failed after the upload.",
	 push_opts, GN_ARRAY_LEN(push_opts), 1, 1, push_run},
	{"list", "", "List models with their latest version and aliases.", NULL, 0, 0, 0, list_run},
	{"show", "NAME[@VERSION]", "Show a model with its versions and aliases, or one version (or alias).", NULL, 0, 1,
	 1, show_run},
	{"alias", "set|rm NAME ALIAS [VERSION]", "set: point ALIAS at VERSION; rm: remove ALIAS.", NULL, 0, 3, 4,
	 alias_run},
	{"yank", "NAME VERSION",
	 "Withdraw VERSION: no deployment, alias or device assignment may newly target it; devices that run "
	 "it keep it.",
	 yank_opts, GN_ARRAY_LEN(yank_opts), 2, 2, yank_run},
	{"unyank", "NAME VERSION", "Undo a yank: VERSION may be targeted again.", NULL, 0, 2, 2, unyank_run},
	{"opset", "FILE...",
	 "Print the ONNX opset each model file declares for the default domain (read locally, nothing sent): "
	 "what models push --format onnx puts into requirements.opset when the metadata leaves it out.",
	 NULL, 0, 1, 4096, opset_run},
	CMD_TELEMETRY_PROFILE,
	CMD_TELEMETRY_DRIFT,
	CMD_TELEMETRY_CANARY,
};

const cli_group cmd_models_group = {"models", "Publish, inspect and yank model versions; point aliases at them.", cmds,
				    GN_ARRAY_LEN(cmds)};
