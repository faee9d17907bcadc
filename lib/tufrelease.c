/* Checking the server's release draft before CI signs it (see tufrelease.h). */
#include "tufrelease.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "json.h"
#include "model.h"
#include "tuf.h"

#define REFUSE "; refusing to sign"

/* The SHA-256 of v dumped compact with sorted keys (as the server hashes it), or null. */
static json_t *dump_sha(const json_t *v)
{
	if (!v || json_is_null(v))
		return json_null();
	char hex[GN_SHA256_HEX_LEN + 1], *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	if (!s)
		return json_null();
	gn_sha256_hex(hex, s, strlen(s));
	free(s);
	return json_string(hex);
}

int gn_tufr_expected_custom(json_t **out, char **out_file, const char *model, const json_t *meta, gn_err *err)
{
	const struct gn_model_format *f;
	const char *fmt = gn_json_str(meta, "format"), *fn = gn_json_str(meta, "filename");
	const char *version = gn_json_str(meta, "version");
	int rc = gn_model_format_lookup(&f, fmt ? fmt : GN_MODEL_FORMAT_DEFAULT, err);
	if (rc)
		return rc;
	if (!version)
		return gn_err_set(err, GN_EINVAL, "the metadata has no version");
	json_t *c = json_pack("{s:s,s:s,s:s}", "model", model, "version", version, "format", f->name);
	static const char *const keep[] = {"requirements", "inputs", "outputs"};
	for (size_t i = 0; i < GN_ARRAY_LEN(keep); i++) {
		json_t *v = json_object_get(meta, keep[i]);
		json_object_set_new(c, keep[i], v ? json_deep_copy(v) : json_null());
	}
	json_object_set_new(c, "sample_sha256", dump_sha(json_object_get(meta, "sample")));
	json_object_set_new(c, "reference_profile_sha256", dump_sha(json_object_get(meta, "reference_profile")));
	*out = c;
	*out_file = fn ? gn_strdup(fn) : gn_asprintf("model.%s", f->ext);
	return 0;
}

/* Checks that signed has no key but the five of targets metadata and, when allowed, delegations. */
static int only_known_keys(const json_t *sp, bool delegations_ok, gn_err *err)
{
	static const char *const known[] = {"_type", "spec_version", "version", "expires", "targets"};
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)sp, k, v) {
		size_t i = 0;
		while (i < GN_ARRAY_LEN(known) && strcmp(known[i], k) != 0)
			i++;
		if (i < GN_ARRAY_LEN(known))
			continue;
		if (strcmp(k, "delegations") == 0 && delegations_ok)
			continue;
		if (strcmp(k, "delegations") == 0)
			return gn_err_set(err, GN_ERROR,
					  "the server's release draft adds delegations the current version does not "
					  "have" REFUSE);
		return gn_err_set(err, GN_ERROR,
				  "the server's release draft has an unexpected field '%s' in its signed part" REFUSE,
				  k);
	}
	return 0;
}

/* Most differing fields named in a refusal. */
#define MAX_NAMED 8

/* A short rendering of v for a message: a number, a string or a literal; "..." for anything else
 * or anything long. New. */
static char *brief(const json_t *v)
{
	if (!v)
		return gn_strdup("nothing");
	if (json_is_object(v) || json_is_array(v))
		return gn_strdup(json_is_object(v) ? "{...}" : "[...]");
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s && strlen(s) <= 80)
		return s;
	free(s);
	return gn_strdup("...");
}

/* path.k (new), k cut at 64 bytes and its control bytes shown as '?': keys come from the server's
 * draft, and a server this check distrusts must not write escape sequences to the terminal. */
static char *sub_path(const char *path, const char *k)
{
	char safe[65];
	size_t i = 0;
	for (; k[i] && i < sizeof(safe) - 1; i++)
		safe[i] = (unsigned char)k[i] < 0x20 || k[i] == 0x7f ? '?' : k[i];
	safe[i] = '\0';
	return gn_asprintf("%s%s%s%s", path, *path ? "." : "", safe, k[i] ? "..." : "");
}

/* Appends to b the paths (under path) where got and want differ: into objects down to depth
 * levels, else the path with both values; *n counts them (at most MAX_NAMED named). */
static void name_differences(gn_buf *b, size_t *n, const char *path, const json_t *got, const json_t *want, int depth)
{
	const char *k;
	json_t *v;
	if (json_equal(got, want) || (!got && !want))
		return;
	if (depth > 0 && json_is_object(got) && json_is_object(want)) {
		json_object_foreach((json_t *)want, k, v) {
			char *sub = sub_path(path, k);
			name_differences(b, n, sub, json_object_get(got, k), v, depth - 1);
			free(sub);
		}
		json_object_foreach((json_t *)got, k, v) {
			if (json_object_get(want, k))
				continue;
			char *sub = sub_path(path, k);
			name_differences(b, n, sub, v, NULL, depth - 1);
			free(sub);
		}
		return;
	}
	if (++*n > MAX_NAMED)
		return;
	char *g = brief(got), *w = brief(want);
	gn_buf_printf(b, "%s%s (the server's %s, this push's %s)", *n > 1 ? ", " : "", *path ? path : "the entry", g,
		      w);
	free(g);
	free(w);
}

/* Returns what differs between the draft's target entry and the expected one, naming each field:
 * "custom.requirements.opset (the server's 18, this push's 13), ..." (new). */
static char *entry_differences(const json_t *got, const json_t *want)
{
	gn_buf b;
	size_t n = 0;
	json_t *g = json_deep_copy(got);
	json_object_del(json_object_get(g, "custom"), "published_at"); /* checked on its own */
	gn_buf_init(&b);
	name_differences(&b, &n, "", g, want, 3);
	if (n > MAX_NAMED)
		gn_buf_printf(&b, " and %zu more", n - MAX_NAMED);
	if (n == 0)
		gn_buf_printf(&b, "custom.published_at (%s: not within a day of now)",
			      gn_json_str(json_object_get(got, "custom"), "published_at")
				      ? gn_json_str(json_object_get(got, "custom"), "published_at")
				      : "not a time");
	json_decref(g);
	char *s = gn_strdup(b.len ? b.data : "");
	gn_buf_cleanup(&b);
	return s;
}

/* Whether the draft's entry is the expected one, but for the "published_at" the server adds to its
 * custom fields (when it stored the upload, which CI cannot know to the second): a time within
 * GN_TUFR_PUBLISHED_SKEW_S before and after now. */
static bool entry_ok(const json_t *got, const json_t *want, int64_t now)
{
	json_t *g = json_deep_copy(got), *custom = json_object_get(g, "custom");
	const json_t *at = json_object_get(custom, "published_at");
	int64_t t = 0;
	bool ok = true;
	if (at) {
		ok = !gn_tuf_time_parse(&t, json_string_value(at)) && t >= now - GN_TUFR_PUBLISHED_SKEW_S &&
		     t <= now + GN_TUFR_PUBLISHED_SKEW_S;
		json_object_del(custom, "published_at");
	}
	ok = ok && json_equal(g, want);
	json_decref(g);
	return ok;
}

int gn_tufr_draft_check(const json_t *draft, const struct gn_tufr_expect *want, gn_err *err)
{
	const json_t *sp = json_object_get(draft, "signed"), *cur_env = json_object_get(draft, "current");
	const json_t *cur = json_object_get(cur_env, "signed");
	const char *role = gn_json_str(draft, "role"), *path = gn_json_str(draft, "path");
	const char *type = gn_json_str(sp, "_type"), *spec = gn_json_str(sp, "spec_version");
	const json_t *ver = json_object_get(sp, "version");
	int64_t expires = 0;
	if (!role || !json_is_object(sp))
		return gn_err_set(err, GN_ERROR, "the server's release draft has no role or signed part" REFUSE);
	if (!path || strcmp(path, want->path) != 0)
		return gn_err_set(err, GN_ERROR, "the server's release draft releases %s, not %s (this push)" REFUSE,
				  path ? path : "nothing", want->path);
	if (!cur_env || json_is_null(cur_env)) {
		if (!want->first_release)
			return gn_err_set(err, GN_ERROR,
					  "the server's release draft says role %s has no current version, which "
					  "would drop every target it lists" REFUSE
					  " (for the role's very first release, pass --first-release)",
					  role);
	} else if (!json_is_object(cur) || !json_is_integer(json_object_get(cur, "version")) ||
		   !json_is_object(json_object_get(cur, "targets"))) {
		return gn_err_set(err, GN_ERROR,
				  "the server's release draft carries a current version of role %s that is not "
				  "targets metadata" REFUSE,
				  role);
	}
	json_int_t want_version = cur ? json_integer_value(json_object_get(cur, "version")) + 1 : 1;
	const json_t *cur_deleg = json_object_get(cur, "delegations");
	int rc = only_known_keys(sp, cur_deleg != NULL, err);
	if (rc)
		return rc;
	if (!type || strcmp(type, "targets") != 0 || !json_is_integer(ver) || json_integer_value(ver) != want_version)
		return gn_err_set(err, GN_ERROR,
				  "the server's release draft is not version %lld of targets role %s" REFUSE,
				  (long long)want_version, role);
	const char *want_spec = cur ? gn_json_str(cur, "spec_version") : GN_TUF_SPEC_VERSION;
	if (!spec || !want_spec || strcmp(spec, want_spec) != 0)
		return gn_err_set(err, GN_ERROR,
				  "the server's release draft changes spec_version to %s (expected %s)" REFUSE,
				  spec ? spec : "nothing", want_spec ? want_spec : "1.x");
	if (gn_tuf_time_parse(&expires, gn_json_str(sp, "expires")) || expires <= want->now ||
	    expires > want->now + GN_TUFR_MAX_EXPIRES_S)
		return gn_err_set(
			err, GN_ERROR,
			"the server's release draft expires at %s: not in the next %lld days (is the server's "
			"tuf-targets-expiry longer?)" REFUSE,
			gn_json_str(sp, "expires") ? gn_json_str(sp, "expires") : "(no expiry)",
			GN_TUFR_MAX_EXPIRES_S / 86400);
	if (cur_deleg && !json_equal(cur_deleg, json_object_get(sp, "delegations")))
		return gn_err_set(err, GN_ERROR, "the server's release draft changes the delegations of role %s" REFUSE,
				  role);

	const json_t *targets = json_object_get(sp, "targets");
	json_t *entry = json_pack("{s:I,s:{s:s},s:O}", "length", (json_int_t)want->length, "hashes", "sha256",
				  want->sha256, "custom", want->custom);
	const json_t *old = json_object_get(json_object_get(cur, "targets"), want->path);
	json_t *expect = cur ? json_deep_copy(json_object_get(cur, "targets")) : json_object();
	json_object_set(expect, want->path, json_object_get(targets, want->path));
	if (!json_is_object(targets))
		rc = gn_err_set(err, GN_ERROR, "the server's release draft has no targets" REFUSE);
	else if (old && !json_equal(old, json_object_get(targets, want->path)))
		rc = gn_err_set(err, GN_ERROR,
				"role %s already lists %s with other bytes or fields; the server's release draft "
				"would replace them" REFUSE,
				role, want->path);
	else if (!entry_ok(json_object_get(targets, want->path), entry, want->now)) {
		char *diff = entry_differences(json_object_get(targets, want->path), entry);
		rc = gn_err_set(err, GN_ERROR,
				"the server's release draft lists %s with other bytes or custom fields than this "
				"push: %s" REFUSE,
				want->path, diff);
		free(diff);
	} else if (!json_equal(targets, expect))
		rc = gn_err_set(err, GN_ERROR,
				"the server's release draft adds, removes or changes targets besides %s" REFUSE,
				want->path);
	json_decref(entry);
	json_decref(expect);
	return rc;
}
