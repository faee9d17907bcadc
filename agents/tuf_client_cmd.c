/* ganglion-agent tuf-client: a TUF client on the command line, for interop tests against other TUF
 * implementations and their test suites (the "client-under-test" protocol of the TUF conformance
 * suite): init, refresh, download, exit 0 on success and 1 on any failure. Every check is the
 * agent's own (lib/tufclient.c, lib/tuf.c); the order is the TUF 1.0 client workflow over a static
 * repository: METADATA_URL/N.root.json while there is a next root, timestamp.json,
 * [VERSION.]snapshot.json, [VERSION.]targets.json (versioned under consistent snapshots), and a
 * target at TARGET_BASE_URL/PATH (DIR/HASH.NAME under consistent snapshots). The metadata it trusts
 * is kept in METADATA_DIR as ROLE.json; a downloaded target in TARGET_DIR under its URL-encoded
 * path. A target is looked up through delegated targets roles as TUF 5.6.7 says (lib/tufdeleg.c);
 * each delegated role is fetched as [VERSION.]ROLE.json and kept as ROLE.json too. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "fileio.h"
#include "http_client.h"
#include "json.h"
#include "tuf.h"
#include "tufclient.h"
#include "tufdeleg.h"

/* A target is held in memory while it is checked: this command is for tests, not for gigabytes. */
#define MAX_TARGET_BYTES ((size_t)1 << 30)

struct tc {
	const char *metadata_dir, *metadata_url, *target_name, *target_dir, *target_base_url, *token_file;
	char *token; /* from token_file: sent as a bearer token with every request (a director's needs one) */
	const struct agent_config *cfg;
	int64_t now;
};

static const char usage[] =
	"usage: ganglion-agent tuf-client --metadata-dir DIR init ROOT_FILE\n"
	"       ganglion-agent tuf-client --metadata-dir DIR --metadata-url URL refresh\n"
	"       ganglion-agent tuf-client --metadata-dir DIR --metadata-url URL --target-name PATH\n"
	"                                 --target-dir DIR --target-base-url URL download\n"
	"A TUF client over any static TUF repository, with the agent's checks. Exit status 0 on success,\n"
	"1 on any failure. --token-file FILE sends the token in FILE as a bearer token with every request\n"
	"(gangliond's image repository without tuf-anonymous-read, or a device's director).\n";

static char *path_in(const char *dir, const char *name)
{
	return gn_asprintf("%s/%s", dir, name);
}

/* Reads a whole file (new, NUL-terminated); GN_ENOTFOUND when it does not exist. */
static int read_file(char **out, size_t *out_len, const char *path, size_t max, gn_err *err)
{
	FILE *f = fopen(path, "rb");
	gn_buf b;
	char chunk[65536];
	size_t n;
	if (!f)
		return gn_err_set(err, errno == ENOENT ? GN_ENOTFOUND : GN_ERROR, "cannot read %s: %s", path,
				  strerror(errno));
	gn_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len <= max)
		gn_buf_append(&b, chunk, n);
	bool bad = ferror(f);
	fclose(f);
	if (bad || b.len > max) {
		gn_buf_cleanup(&b);
		return gn_err_set(err, GN_EINVAL, "%s: %s", path, bad ? "read error" : "too large");
	}
	gn_buf_puts(&b, "");
	*out_len = b.len;
	*out = gn_buf_detach(&b);
	return 0;
}

/* Reads the trusted metadata of role from the metadata dir into *out (new); GN_ENOTFOUND if none. */
static int read_trusted(json_t **out, const struct tc *c, const char *role, gn_err *err)
{
	char *name = gn_asprintf("%s.json", role), *path = path_in(c->metadata_dir, name), *bytes = NULL;
	size_t len;
	int rc = read_file(&bytes, &len, path, GN_TUF_MAX_METADATA, err);
	if (!rc)
		rc = gn_tufc_parse(out, bytes, len, err);
	free(bytes);
	free(path);
	free(name);
	return rc;
}

/* Stores bytes as the trusted metadata of role. */
static int store(const struct tc *c, const char *role, const char *bytes, size_t len, gn_err *err)
{
	char *name = gn_asprintf("%s.json", role), *path = path_in(c->metadata_dir, name);
	int rc = gn_file_write_atomic(path, bytes, len, 0644, err);
	free(path);
	free(name);
	return rc;
}

static void forget(const struct tc *c, const char *role)
{
	char *name = gn_asprintf("%s.json", role), *path = path_in(c->metadata_dir, name);
	unlink(path);
	free(path);
	free(name);
}

/* GETs base/name (at most max bytes) into *out (new, NUL-terminated). GN_ENOTFOUND for 404 and
 * 403 (what static repositories answer for a file they lack), GN_ETOOBIG past max. */
static int fetch(char **out, size_t *out_len, const struct tc *c, const char *base, const char *name, size_t max,
		 gn_err *err)
{
	size_t bl = strlen(base);
	char *url = gn_asprintf("%.*s/%s", (int)(bl && base[bl - 1] == '/' ? bl - 1 : bl), base, name);
	gn_http_resp resp = {0};
	gn_http_req req = {.method = "GET",
			   .url = url,
			   .token = c->token,
			   .max_response = max ? max : 1,
			   .ca_file = c->cfg->ca_file && *c->cfg->ca_file ? c->cfg->ca_file : NULL,
			   .pinned_pubkey =
				   c->cfg->pinned_pubkey && *c->cfg->pinned_pubkey ? c->cfg->pinned_pubkey : NULL,
			   .client_cert = c->cfg->client_cert,
			   .client_key = c->cfg->client_key};
	int rc = gn_http_do(&resp, &req, err);
	if (!rc && (resp.status == 404 || resp.status == 403))
		rc = gn_err_set(err, GN_ENOTFOUND, "%s: %ld", url, resp.status);
	else if (!rc && resp.status != 200)
		rc = gn_err_set(err, GN_EUNAVAIL, "%s: HTTP status %ld", url, resp.status);
	if (!rc) {
		gn_buf_puts(&resp.body, "");
		*out_len = resp.body.len;
		*out = gn_buf_detach(&resp.body);
	} else if (rc == GN_ETOOBIG) {
		rc = gn_err_set(err, GN_ETOOBIG, "%s is larger than the %zu bytes allowed for it", url, max);
	}
	gn_http_resp_cleanup(&resp);
	free(url);
	return rc;
}

static const json_t *signed_of(const json_t *env)
{
	return json_object_get(env, "signed");
}

/* TUF 5.3.11: a new root that changes the timestamp or snapshot keys makes the trusted timestamp
 * and snapshot go (so that a rotation undoes a fast-forward made with a stolen key); one that
 * changes the targets keys, the trusted targets. As the agent does. */
static void forget_rotated(const struct tc *c, const json_t *old, const json_t *next)
{
	static const char *const guarded[] = {"timestamp", "snapshot", "targets"};
	for (size_t g = 0; g < GN_ARRAY_LEN(guarded); g++) {
		const json_t *ok = json_object_get(json_object_get(signed_of(old), "roles"), guarded[g]);
		const json_t *nk = json_object_get(json_object_get(signed_of(next), "roles"), guarded[g]);
		if (json_equal(json_object_get(ok, "keyids"), json_object_get(nk, "keyids")))
			continue;
		if (strcmp(guarded[g], "targets") == 0) {
			forget(c, "targets");
		} else {
			forget(c, "timestamp");
			forget(c, "snapshot");
		}
	}
}

/* TUF 5.3: follows the root chain from the trusted root (at most GN_TUF_MAX_ROOT_ROTATIONS
 * versions), storing each root once it is trusted; the newest must not have expired. */
static int update_root(json_t **out, const struct tc *c, gn_err *err)
{
	json_t *root = NULL;
	int rc = read_trusted(&root, c, "root", err), hops = 0;
	if (rc == GN_ENOTFOUND)
		return gn_err_set(err, GN_EINVAL, "no trusted root in %s: run init first", c->metadata_dir);
	for (; !rc; hops++) {
		char name[64], *bytes = NULL;
		size_t len;
		json_t *next = NULL;
		snprintf(name, sizeof(name), "%lld.root.json",
			 (long long)json_integer_value(json_object_get(signed_of(root), "version")) + 1);
		if (hops == GN_TUF_MAX_ROOT_ROTATIONS) {
			rc = gn_err_set(err, GN_EAUTH, "more than %d root rotations in one refresh",
					GN_TUF_MAX_ROOT_ROTATIONS);
			break;
		}
		rc = fetch(&bytes, &len, c, c->metadata_url, name, GN_TUF_MAX_ROOT_BYTES, err);
		if (rc == GN_ENOTFOUND) {
			rc = 0;
			break;
		}
		if (!rc && !(rc = gn_tufc_parse(&next, bytes, len, err)) &&
		    !(rc = gn_tufc_root_update(root, next, err)) && !(rc = store(c, "root", bytes, len, err))) {
			forget_rotated(c, root, next);
			json_decref(root);
			root = next;
			next = NULL;
		}
		json_decref(next);
		free(bytes);
	}
	if (!rc)
		rc = gn_tufc_check_fresh(root, c->now, err);
	if (rc) {
		json_decref(root);
		return rc;
	}
	*out = root;
	return 0;
}

/* Fetches name (at most max bytes), parses it, checks it against the entry that lists it when
 * listing is set (TUF 5.5.2, 5.6.2: version, length, hashes), then as role under root against the
 * trusted copy (signatures, rollback, expiry), and stores it. *out is new. */
static int update_role(json_t **out, const struct tc *c, const json_t *root, const char *role, const char *name,
		       const json_t *listing, const char *file, size_t max, gn_err *err)
{
	char *bytes = NULL;
	size_t len;
	json_t *env = NULL, *trusted = NULL;
	int rc = fetch(&bytes, &len, c, c->metadata_url, name, max, err);
	if (rc == GN_ENOTFOUND)
		rc = gn_err_set(err, GN_ENOTFOUND, "the repository has no %s", name);
	if (!rc)
		rc = gn_tufc_parse(&env, bytes, len, err);
	if (!rc && listing)
		rc = gn_tufc_meta_matches(listing, file, env, bytes, len, err);
	if (!rc && (rc = read_trusted(&trusted, c, role, err)) == GN_ENOTFOUND)
		rc = 0;
	if (!rc)
		rc = gn_tufc_check_role(root, role, env, trusted, c->now, err);
	if (!rc)
		rc = store(c, role, bytes, len, err);
	json_decref(trusted);
	free(bytes);
	if (rc) {
		json_decref(env);
		return rc;
	}
	*out = env;
	return 0;
}

/* The name of role's metadata file: "VERSION.ROLE.json" under consistent snapshots, else "ROLE.json". */
static void role_file(char *out, size_t n, const json_t *root, const json_t *listing, const char *role)
{
	char file[64];
	snprintf(file, sizeof(file), "%s.json", role);
	json_int_t v = json_integer_value(
		json_object_get(json_object_get(json_object_get(signed_of(listing), "meta"), file), "version"));
	if (json_is_true(json_object_get(signed_of(root), "consistent_snapshot")))
		snprintf(out, n, "%lld.%s", (long long)v, file);
	else
		snprintf(out, n, "%s", file);
}

/* The TUF 1.0 client workflow for the top-level roles; *out_root, *out_snapshot and *out_targets
 * are new. */
static int refresh(json_t **out_root, json_t **out_snapshot, json_t **out_targets, const struct tc *c, gn_err *err)
{
	json_t *root = NULL, *ts = NULL, *sn = NULL, *tg = NULL;
	char name[96];
	int rc = update_root(&root, c, err);
	if (!rc)
		rc = update_role(&ts, c, root, "timestamp", "timestamp.json", NULL, NULL, GN_TUF_MAX_TIMESTAMP_BYTES,
				 err);
	if (!rc) {
		role_file(name, sizeof(name), root, ts, "snapshot");
		rc = update_role(&sn, c, root, "snapshot", name, ts, "snapshot.json",
				 gn_tufc_fetch_limit(ts, "snapshot.json", GN_TUF_MAX_SNAPSHOT_BYTES), err);
	}
	if (!rc) {
		role_file(name, sizeof(name), root, sn, "targets");
		rc = update_role(&tg, c, root, "targets", name, sn, "targets.json",
				 gn_tufc_fetch_limit(sn, "targets.json", GN_TUF_MAX_TARGETS_BYTES), err);
	}
	json_decref(ts);
	if (rc) {
		json_decref(root);
		json_decref(sn);
		json_decref(tg);
		return rc;
	}
	*out_root = root;
	*out_snapshot = sn;
	*out_targets = tg;
	return 0;
}

/* What the delegation walk needs to fetch a delegated role: the command and the trusted root. */
struct walk_ctx {
	const struct tc *c;
	const json_t *root;
};

/* gn_tufd_fetch_fn over the metadata URL. */
static int walk_fetch(void *ctx, char **out, size_t *out_len, const char *role, long long version, size_t max,
		      gn_err *err)
{
	const struct walk_ctx *w = ctx;
	char *name = json_is_true(json_object_get(signed_of(w->root), "consistent_snapshot"))
			     ? gn_asprintf("%lld.%s.json", version, role)
			     : gn_asprintf("%s.json", role);
	int rc = fetch(out, out_len, w->c, w->c->metadata_url, name, max, err);
	free(name);
	return rc;
}

/* gn_tufd_trusted_fn over the metadata dir. */
static int walk_trusted(void *ctx, json_t **out, const char *role, gn_err *err)
{
	const struct walk_ctx *w = ctx;
	return read_trusted(out, w->c, role, err);
}

/* TUF 5.6.7: the entry for the target, through delegations; the delegated roles verified on the way
 * are stored as trusted. *out is new. */
static int find_target(json_t **out, const struct tc *c, const json_t *root, const json_t *snapshot,
		       const json_t *targets, gn_err *err)
{
	struct walk_ctx wc = {c, root};
	struct gn_tufd_walk w = {.targets = targets,
				 .snapshot = snapshot,
				 .now = c->now,
				 .fetch = walk_fetch,
				 .trusted = walk_trusted,
				 .ctx = &wc};
	const json_t *entry = NULL, *env;
	const char *role;
	int rc = gn_tufd_find_target(&entry, &w, c->target_name, err);
	json_object_foreach(w.loaded, role, env) {
		char *bytes = json_dumps(env, JSON_COMPACT | JSON_SORT_KEYS);
		if (!rc)
			rc = store(c, role, bytes, strlen(bytes), err);
		free(bytes);
	}
	if (!rc)
		*out = json_incref((json_t *)entry);
	gn_tufd_walk_cleanup(&w);
	return rc;
}

/* Writes into *out (new) the target's path below the base URL: each segment URL-encoded, and under
 * consistent snapshots the last one prefixed with a hash the entry lists (SHA-256 if it does). */
static char *target_url_path(const json_t *root, const char *path, const json_t *entry)
{
	const json_t *hashes = json_object_get(entry, "hashes");
	const char *hash =
		gn_json_str(hashes, "sha256") ? gn_json_str(hashes, "sha256") : gn_json_str(hashes, "sha512");
	bool prefix = json_is_true(json_object_get(signed_of(root), "consistent_snapshot")) && hash;
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	gn_buf b;
	gn_buf_init(&b);
	for (const char *seg = path; seg;) {
		const char *slash = strchr(seg, '/');
		char *raw = gn_strndup(seg, slash ? (size_t)(slash - seg) : strlen(seg));
		char *esc = gn_http_escape(raw);
		if (seg == base && prefix)
			gn_buf_printf(&b, "%s.", hash);
		gn_buf_puts(&b, esc);
		if (slash)
			gn_buf_puts(&b, "/");
		free(esc);
		free(raw);
		seg = slash ? slash + 1 : NULL;
	}
	gn_buf_puts(&b, "");
	return gn_buf_detach(&b);
}

/* TUF 5.7: the target named target_name, from the local copy when it still matches its entry,
 * else downloaded from the target base URL and checked against its length and hashes. */
static int download(const struct tc *c, const json_t *root, const json_t *snapshot, const json_t *targets, gn_err *err)
{
	json_t *entry = NULL;
	char *esc = NULL, *local = NULL, *bytes = NULL, *urlpath = NULL;
	size_t len = 0;
	int rc = find_target(&entry, c, root, snapshot, targets, err);
	if (rc)
		return rc;
	const json_t *length = json_object_get(entry, "length");
	if (!json_is_integer(length) || json_integer_value(length) < 0 ||
	    (uint64_t)json_integer_value(length) > MAX_TARGET_BYTES) {
		rc = gn_err_set(err, GN_EINVAL, "target '%s' has no length this client can hold (up to %zu bytes)",
				c->target_name, MAX_TARGET_BYTES);
		goto out;
	}
	esc = gn_http_escape(c->target_name);
	local = path_in(c->target_dir, esc);
	/* A copy that still matches its signed entry is not fetched again. */
	if (read_file(&bytes, &len, local, MAX_TARGET_BYTES, err) == 0 &&
	    gn_tufc_target_bytes_ok(entry, c->target_name, bytes, len, err) == 0) {
		rc = 0;
		goto out;
	}
	free(bytes);
	bytes = NULL;
	urlpath = target_url_path(root, c->target_name, entry);
	rc = fetch(&bytes, &len, c, c->target_base_url, urlpath, (size_t)json_integer_value(length) + 1, err);
	if (!rc)
		rc = gn_tufc_target_bytes_ok(entry, c->target_name, bytes, len, err);
	if (!rc)
		rc = gn_file_write_atomic(local, bytes, len, 0644, err);
out:
	json_decref(entry);
	free(urlpath);
	free(bytes);
	free(local);
	free(esc);
	return rc;
}

/* Stores the first trusted root: root_file, once it parses as root metadata signed by a threshold
 * of its own root keys (its expiry is the refresh's concern). */
static int init(const struct tc *c, const char *root_file, gn_err *err)
{
	char *bytes = NULL;
	size_t len;
	json_t *root = NULL;
	int rc = read_file(&bytes, &len, root_file, GN_TUF_MAX_ROOT_BYTES, err);
	if (!rc)
		rc = gn_tufc_parse(&root, bytes, len, err);
	if (!rc && strcmp(gn_json_str(signed_of(root), "_type"), "root") != 0)
		rc = gn_err_set(err, GN_EINVAL, "%s is not root metadata", root_file);
	if (!rc && (rc = gn_tuf_verify_role(root, signed_of(root), "root", err)) == 0) {
		mkdir(c->metadata_dir, 0755);
		rc = store(c, "root", bytes, len, err);
	}
	json_decref(root);
	free(bytes);
	return rc;
}

/* Reads the options (anywhere on the line) and the positional arguments; false on a bad line. */
static bool parse_args(struct tc *c, const char **out_cmd, const char **out_arg, int argc, char **argv)
{
	static const struct {
		const char *name;
		size_t offset;
	} opts[] = {
		{"--metadata-dir", offsetof(struct tc, metadata_dir)},
		{"--metadata-url", offsetof(struct tc, metadata_url)},
		{"--target-name", offsetof(struct tc, target_name)},
		{"--target-dir", offsetof(struct tc, target_dir)},
		{"--target-base-url", offsetof(struct tc, target_base_url)},
		{"--token-file", offsetof(struct tc, token_file)},
	};
	*out_cmd = *out_arg = NULL;
	for (int i = 0; i < argc; i++) {
		size_t k = 0;
		while (k < GN_ARRAY_LEN(opts) && strcmp(argv[i], opts[k].name) != 0)
			k++;
		if (k < GN_ARRAY_LEN(opts)) {
			if (i + 1 == argc)
				return false;
			*(const char **)((char *)c + opts[k].offset) = argv[++i];
		} else if (strncmp(argv[i], "--", 2) == 0) {
			return false;
		} else if (!*out_cmd) {
			*out_cmd = argv[i];
		} else if (!*out_arg) {
			*out_arg = argv[i];
		} else {
			return false;
		}
	}
	return *out_cmd != NULL;
}

/* Checks that the options cmd needs are there and no positional argument is extra. */
static bool args_fit(const struct tc *c, const char *cmd, const char *arg)
{
	if (!c->metadata_dir)
		return false;
	if (strcmp(cmd, "init") == 0)
		return arg != NULL;
	if (arg || !c->metadata_url)
		return false;
	if (strcmp(cmd, "refresh") == 0)
		return true;
	return strcmp(cmd, "download") == 0 && c->target_name && c->target_dir && c->target_base_url &&
	       *c->target_name && strcmp(c->target_name, ".") != 0 && strcmp(c->target_name, "..") != 0;
}

int tuf_client_cmd_main(const struct agent_config *cfg, int argc, char **argv)
{
	struct tc c = {.cfg = cfg, .now = gn_now()};
	const char *cmd, *arg;
	json_t *root = NULL, *snapshot = NULL, *targets = NULL;
	gn_err err;
	int rc;
	if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
		fputs(usage, stdout);
		return 0;
	}
	if (!parse_args(&c, &cmd, &arg, argc, argv) || !args_fit(&c, cmd, arg)) {
		fputs(usage, stderr);
		return 1;
	}
	if (c.token_file && (rc = gn_secret_file_read(&c.token, c.token_file, 4096, &err))) {
		/* answered below */
	} else if (strcmp(cmd, "init") == 0) {
		rc = init(&c, arg, &err);
	} else {
		rc = refresh(&root, &snapshot, &targets, &c, &err);
		if (!rc && strcmp(cmd, "download") == 0)
			rc = download(&c, root, snapshot, targets, &err);
	}
	json_decref(root);
	json_decref(snapshot);
	json_decref(targets);
	free(c.token);
	if (rc) {
		fprintf(stderr, "ganglion-agent tuf-client: %s: %s\n", cmd, err.msg);
		return 1;
	}
	return 0;
}
