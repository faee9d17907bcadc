/* TUF delegations: role names, the shape of "delegations", path matching, and the pre-order
 * depth-first walk that finds a target through delegated targets roles. */
#include "tufdeleg.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "tuf.h"
#include "tufclient.h"

int gn_tufd_role_name_check(const char *name, gn_err *err)
{
	static const char *const top[] = {"root", "targets", "snapshot", "timestamp"};
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > GN_TUF_ROLE_NAME_MAX || name[0] == '.' ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return gn_err_set(err, GN_EINVAL,
				  "delegated role name '%.80s' is not 1 to %d characters of [A-Za-z0-9._-] "
				  "not starting with '.'",
				  name ? name : "", GN_TUF_ROLE_NAME_MAX);
	for (size_t i = 0; i < GN_ARRAY_LEN(top); i++)
		if (strcmp(name, top[i]) == 0)
			return gn_err_set(err, GN_EINVAL, "a delegated role cannot be named '%s'", name);
	return 0;
}

/* Checks that arr is an array of strings (hex: lower-case hex digits, at least one). */
static bool strings(const json_t *arr, bool hex)
{
	size_t i;
	json_t *v;
	if (!json_is_array(arr))
		return false;
	json_array_foreach(arr, i, v) {
		const char *s = json_string_value(v);
		if (!s || (hex && (!*s || strspn(s, "0123456789abcdef") != strlen(s))))
			return false;
	}
	return true;
}

/* Checks one delegated role's keys and threshold against the delegation's keys. */
static int role_keys_ok(const json_t *keys, const char *name, const json_t *role, gn_err *err)
{
	const json_t *keyids = json_object_get(role, "keyids"), *t = json_object_get(role, "threshold");
	size_t i, distinct = 0;
	json_t *kid;
	if (!json_is_array(keyids) || !json_is_integer(t))
		return gn_err_set(err, GN_EINVAL, "delegated role '%s' lacks keyids or threshold", name);
	json_array_foreach(keyids, i, kid) {
		unsigned char pub[GN_ED25519_PUB_LEN];
		gn_err why;
		if (gn_tuf_key_public(pub, keys, json_string_value(kid), &why))
			return gn_err_set(err, GN_EINVAL, "delegated role '%s': %s", name, why.msg);
		bool again = false;
		for (size_t k = 0; k < i && !again; k++)
			again = json_equal(json_array_get(keyids, k), kid);
		distinct += !again;
	}
	if (json_integer_value(t) < 1 || (size_t)json_integer_value(t) > distinct)
		return gn_err_set(
			err, GN_EINVAL,
			"delegated role '%s' has threshold %lld over %zu key(s); it must be between 1 and the "
			"number of its keys",
			name, (long long)json_integer_value(t), distinct);
	return 0;
}

/* Checks one element of "roles". */
static int role_ok(const json_t *keys, const json_t *role, gn_err *err)
{
	const char *name = json_string_value(json_object_get(role, "name"));
	const json_t *paths = json_object_get(role, "paths"), *prefixes = json_object_get(role, "path_hash_prefixes");
	const json_t *term = json_object_get(role, "terminating");
	int rc;
	if (!json_is_object(role))
		return gn_err_set(err, GN_EINVAL, "a delegated role is not an object");
	if ((rc = gn_tufd_role_name_check(name, err)) || (rc = role_keys_ok(keys, name, role, err)))
		return rc;
	if (term && !json_is_boolean(term))
		return gn_err_set(err, GN_EINVAL, "delegated role '%s': 'terminating' is not a boolean", name);
	if (!paths == !prefixes)
		return gn_err_set(err, GN_EINVAL,
				  "delegated role '%s' must have exactly one of 'paths' and "
				  "'path_hash_prefixes'",
				  name);
	if (paths && !strings(paths, false))
		return gn_err_set(err, GN_EINVAL, "delegated role '%s': 'paths' is not an array of strings", name);
	if (prefixes && !strings(prefixes, true))
		return gn_err_set(err, GN_EINVAL,
				  "delegated role '%s': 'path_hash_prefixes' is not an array of lower-case hex strings",
				  name);
	return 0;
}

int gn_tufd_delegations_check(const json_t *targets_signed, gn_err *err)
{
	const json_t *d = json_object_get(targets_signed, "delegations");
	const json_t *keys = json_object_get(d, "keys"), *roles = json_object_get(d, "roles");
	size_t i;
	json_t *role;
	int rc;
	if (!d)
		return 0;
	if (!json_is_object(d) || !json_is_object(keys) || !json_is_array(roles))
		return gn_err_set(err, GN_EINVAL, "'delegations' must be {\"keys\": {...}, \"roles\": [...]}");
	json_array_foreach(roles, i, role) {
		if ((rc = role_ok(keys, role, err)))
			return rc;
		for (size_t k = 0; k < i; k++)
			if (json_equal(json_object_get(json_array_get(roles, k), "name"),
				       json_object_get(role, "name")))
				return gn_err_set(err, GN_EINVAL, "delegated role '%s' is listed twice",
						  json_string_value(json_object_get(role, "name")));
	}
	return 0;
}

bool gn_tufd_role_matches(const json_t *role, const char *path)
{
	const json_t *paths = json_object_get(role, "paths");
	size_t i;
	json_t *v;
	if (paths) {
		json_array_foreach(paths, i, v) {
			/* FNM_PATHNAME: a wildcard never matches '/', as in a shell glob (spec 1.0.20+). */
			if (json_string_value(v) && fnmatch(json_string_value(v), path, FNM_PATHNAME) == 0)
				return true;
		}
		return false;
	}
	char sum[GN_SHA256_HEX_LEN + 1];
	gn_sha256_hex(sum, path, strlen(path));
	json_array_foreach(json_object_get(role, "path_hash_prefixes"), i, v) {
		const char *p = json_string_value(v);
		if (p && strncmp(sum, p, strlen(p)) == 0)
			return true;
	}
	return false;
}

/* A role waiting to be visited: its name, its entry in the delegating role's "roles", and the
 * delegating role's "delegations" (whose keys verify it). */
struct pending {
	const char *name;
	const json_t *role, *delegations;
};

/* Checks a delegated role's metadata env (parsed from bytes) against its delegation, the snapshot
 * and the trusted copy. */
static int check_delegated(struct gn_tufd_walk *w, const struct pending *p, const json_t *env, const char *bytes,
			   size_t len, gn_err *err)
{
	char file[GN_TUF_ROLE_NAME_MAX + 8];
	const json_t *sp = json_object_get(env, "signed");
	const char *type = json_string_value(json_object_get(sp, "_type"));
	json_t *trusted = NULL;
	int rc;
	snprintf(file, sizeof(file), "%s.json", p->name);
	if (!type || strcmp(type, "targets") != 0)
		return gn_err_set(err, GN_EINVAL, "delegated role %s: expected targets metadata, got %s", p->name,
				  type ? type : "?");
	if ((rc = gn_tufc_meta_matches(w->snapshot, file, env, bytes, len, err)))
		return rc;
	/* The delegating role's keys and this role's threshold, in the shape a root gives them. */
	json_t *by =
		json_pack("{s:O,s:{s:O}}", "keys", json_object_get(p->delegations, "keys"), "roles", p->name, p->role);
	rc = gn_tuf_verify_role(env, by, p->name, err);
	json_decref(by);
	if (rc)
		return rc == GN_EINVAL ? GN_EAUTH : rc;
	if (w->trusted && (rc = w->trusted(w->ctx, &trusted, p->name, err)) == GN_ENOTFOUND)
		rc = 0;
	if (!rc && trusted) {
		json_int_t have = json_integer_value(json_object_get(json_object_get(trusted, "signed"), "version"));
		json_int_t got = json_integer_value(json_object_get(sp, "version"));
		if (got < have)
			rc = gn_err_set(err, GN_EAUTH,
					"delegated role %s version %lld is older than the trusted version %lld "
					"(rollback)",
					p->name, (long long)got, (long long)have);
		else if (got == have && !json_equal((json_t *)sp, json_object_get(trusted, "signed")))
			rc = gn_err_set(err, GN_EAUTH,
					"delegated role %s version %lld differs from the trusted metadata of the same "
					"version",
					p->name, (long long)got);
	}
	json_decref(trusted);
	if (!rc)
		rc = gn_tufc_check_fresh(env, w->now, err);
	if (!rc)
		rc = gn_tufd_delegations_check(sp, err);
	return rc;
}

/* Returns in *out (borrowed from w->loaded) the verified metadata of the pending role, fetching
 * it unless an earlier lookup did. */
static int load(const json_t **out, struct gn_tufd_walk *w, const struct pending *p, gn_err *err)
{
	char file[GN_TUF_ROLE_NAME_MAX + 8], *bytes = NULL;
	size_t len = 0;
	json_t *env = NULL;
	int rc;
	if ((*out = json_object_get(w->loaded, p->name))) {
		/* Loaded by an earlier lookup, maybe through another delegating role: its keys must
		 * still vouch for it. */
		json_t *by = json_pack("{s:O,s:{s:O}}", "keys", json_object_get(p->delegations, "keys"), "roles",
				       p->name, p->role);
		rc = gn_tuf_verify_role(*out, by, p->name, err);
		json_decref(by);
		if (rc)
			*out = NULL;
		return rc == GN_EINVAL ? GN_EAUTH : rc;
	}
	snprintf(file, sizeof(file), "%s.json", p->name);
	const json_t *listed = json_object_get(json_object_get(json_object_get(w->snapshot, "signed"), "meta"), file);
	json_int_t version = json_integer_value(json_object_get(listed, "version"));
	if (!listed || version < 1)
		return gn_err_set(err, GN_EAUTH, "the snapshot lists no version of delegated role %s", p->name);
	rc = w->fetch(w->ctx, &bytes, &len, p->name, (long long)version,
		      gn_tufc_fetch_limit(w->snapshot, file, GN_TUF_MAX_TARGETS_BYTES), err);
	if (!rc)
		rc = gn_tufc_parse(&env, bytes, len, err);
	if (!rc)
		rc = check_delegated(w, p, env, bytes, len, err);
	free(bytes);
	if (rc) {
		json_decref(env);
		return rc;
	}
	if (!w->loaded)
		w->loaded = json_object();
	json_object_set_new(w->loaded, p->name, env);
	*out = env;
	return 0;
}

/* Pushes onto the stack, in reverse order so that the first is visited first, the roles of
 * signed's delegations that are trusted for path, up to and including the first terminating one;
 * when there is one, the roles already waiting on the stack are dropped. */
static void push_children(struct pending **stack, size_t *n, size_t *cap, const json_t *signed_part, const char *path)
{
	const json_t *d = json_object_get(signed_part, "delegations");
	const json_t *roles = json_object_get(d, "roles");
	size_t i, first = *n;
	json_t *role;
	json_array_foreach(roles, i, role) {
		if (!gn_tufd_role_matches(role, path))
			continue;
		if (*n == *cap) {
			*cap = *cap ? 2 * *cap : 8;
			*stack = gn_realloc(*stack, *cap * sizeof(**stack));
		}
		(*stack)[(*n)++] = (struct pending){json_string_value(json_object_get(role, "name")), role, d};
		if (json_is_true(json_object_get(role, "terminating"))) {
			/* Nothing after this role, nor any role still waiting, may speak for path. */
			memmove(*stack, *stack + first, (*n - first) * sizeof(**stack));
			*n -= first;
			first = 0;
			break;
		}
	}
	for (size_t a = first, b = *n; a + 1 < b; a++, b--) {
		struct pending t = (*stack)[a];
		(*stack)[a] = (*stack)[b - 1];
		(*stack)[b - 1] = t;
	}
}

int gn_tufd_find_target(const json_t **out, struct gn_tufd_walk *w, const char *path, gn_err *err)
{
	struct pending *stack = NULL;
	size_t n = 0, cap = 0, visits = 0;
	json_t *visited = json_object();
	int rc = gn_tufd_delegations_check(json_object_get(w->targets, "signed"), err);
	*out = NULL;
	if (rc)
		goto out;
	const json_t *sp = json_object_get(w->targets, "signed");
	if ((*out = json_object_get(json_object_get(sp, "targets"), path)))
		goto out;
	visits = 1;
	push_children(&stack, &n, &cap, sp, path);
	while (n > 0) {
		struct pending p = stack[--n];
		const json_t *env;
		if (json_object_get(visited, p.name))
			continue;
		if (visits == GN_TUF_MAX_DELEGATIONS) {
			rc = gn_err_set(err, GN_ENOTFOUND,
					"targets metadata lists no target '%s' within the first %d roles of the "
					"delegation graph",
					path, GN_TUF_MAX_DELEGATIONS);
			goto out;
		}
		if ((rc = load(&env, w, &p, err)))
			goto out;
		sp = json_object_get(env, "signed");
		if ((*out = json_object_get(json_object_get(sp, "targets"), path)))
			goto out;
		json_object_set_new(visited, p.name, json_true());
		visits++;
		push_children(&stack, &n, &cap, sp, path);
	}
	rc = gn_err_set(err, GN_ENOTFOUND, "targets metadata lists no target '%s' (%zu role(s) searched)", path,
			visits);
out:
	free(stack);
	json_decref(visited);
	return rc;
}

void gn_tufd_walk_cleanup(struct gn_tufd_walk *w)
{
	json_decref(w->loaded);
	w->loaded = NULL;
}
