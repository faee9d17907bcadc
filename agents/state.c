/* The agent's data directory: paths, atomic JSON state files, identity, the clock floor. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agent.h"
#include "fileio.h"
#include "json.h"
#include "log.h"
#include "tuf.h"

char *state_path(const struct agent *a, const char *rel)
{
	return gn_asprintf("%s/%s", a->cfg.data_dir, rel);
}

int state_mkdirs(const struct agent *a, gn_err *err)
{
	static const char *const dirs[] = {
		"",          "identity", "trust", "trust/image", "trust/image/delegated", "trust/director",
		"downloads", "models"};
	for (size_t i = 0; i < GN_ARRAY_LEN(dirs); i++) {
		char *p = state_path(a, dirs[i]);
		int rc = mkdir(p, 0700);
		int e = errno;
		free(p);
		if (rc < 0 && e != EEXIST)
			return gn_err_set(err, GN_ERROR, "cannot create %s/%s: %s", a->cfg.data_dir, dirs[i],
					  strerror(e));
	}
	return 0;
}

int state_read_json(json_t **out, const struct agent *a, const char *rel, gn_err *err)
{
	json_error_t je;
	char *p = state_path(a, rel);
	*out = json_load_file(p, JSON_REJECT_DUPLICATES, &je);
	free(p);
	if (!*out) {
		if (je.position == 0 && strstr(je.text, "unable to open"))
			return gn_err_set(err, GN_ENOTFOUND, "%s: none yet", rel);
		return gn_err_set(err, GN_EINVAL, "%s is corrupt: %s", rel, je.text);
	}
	return 0;
}

int state_write_bytes(const struct agent *a, const char *rel, const char *data, size_t len, gn_err *err)
{
	char *p = state_path(a, rel);
	int rc = gn_file_write_atomic(p, data, len, 0600, err);
	free(p);
	return rc;
}

int state_write_json(const struct agent *a, const char *rel, const json_t *j, gn_err *err)
{
	char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
	int rc = state_write_bytes(a, rel, s, strlen(s), err);
	free(s);
	return rc;
}

int state_load_identity(struct agent *a, gn_err *err)
{
	json_t *dev = NULL;
	char *kp = state_path(a, "identity/key.pem");
	int rc = state_read_json(&dev, a, "identity/device.json", err);
	if (rc) {
		if (rc == GN_ENOTFOUND)
			gn_err_set(err, GN_ENOTFOUND,
				   "this device is not enrolled: run `ganglion-agent enroll --token TOKEN`");
		goto out;
	}
	const char *id = gn_json_str(dev, "device_id");
	if (!id || strlen(id) >= sizeof(a->device_id)) {
		rc = gn_err_set(err, GN_EINVAL, "identity/device.json has no device_id");
		goto out;
	}
	snprintf(a->device_id, sizeof(a->device_id), "%s", id);
	rc = gn_ed25519_load(&a->key, kp, err);
	/* The clock floor survives restarts; a missing file starts it at zero. */
	char *cp = state_path(a, "trust/clock");
	FILE *f = fopen(cp, "re");
	long long t = 0;
	if (f) {
		if (fscanf(f, "%lld", &t) == 1)
			a->clock_floor = t;
		fclose(f);
	}
	free(cp);
out:
	json_decref(dev);
	free(kp);
	return rc;
}

void state_clock_seen(struct agent *a, int64_t t)
{
	if (t <= a->clock_floor)
		return;
	char buf[32];
	gn_err err;
	a->clock_floor = t;
	snprintf(buf, sizeof(buf), "%lld\n", (long long)t);
	if (state_write_bytes(a, "trust/clock", buf, strlen(buf), &err))
		gn_log(GN_LOG_WARN, "event=clock_floor_not_saved msg=\"%s\"", err.msg);
}

int64_t state_now(const struct agent *a)
{
	int64_t now = gn_now();
	return now > a->clock_floor ? now : a->clock_floor;
}

/* True when v is a version record: {"name", "version", "sha256"} as strings (sha256 hex). */
static bool is_record(const json_t *v)
{
	const char *sha = gn_json_str(v, "sha256");
	return json_is_object(v) && gn_json_str(v, "name") && gn_json_str(v, "version") && sha && strlen(sha) == 64 &&
	       strspn(sha, "0123456789abcdef") == 64;
}

/* Checks one model's entry of the current format. */
static int entry_check(const char *name, const json_t *e, gn_err *err)
{
	const json_t *cur = json_object_get(e, "current"), *prev = json_object_get(e, "previous");
	const json_t *held = json_object_get(e, "held");
	if (!json_is_object(e) || (cur && !json_is_null(cur) && !is_record(cur)) ||
	    (prev && !json_is_null(prev) && !is_record(prev)) || (held && !json_is_string(held)))
		return gn_err_set(err, GN_EINVAL, "state.json: the entry of model '%.64s' is malformed", name);
	if (is_record(cur) && strcmp(gn_json_str(cur, "name"), name) != 0)
		return gn_err_set(err, GN_EINVAL, "state.json: the entry of model '%.64s' names model '%.64s'", name,
				  gn_json_str(cur, "name"));
	return 0;
}

int state_models_parse(json_t **out, bool *out_migrated, const json_t *state, gn_err *err)
{
	const json_t *models = json_object_get(state, "models"), *e;
	const char *name;
	*out = NULL;
	*out_migrated = false;
	if (!json_is_object(state))
		return gn_err_set(err, GN_EINVAL, "state.json is not an object");
	if (json_is_object(models)) {
		json_object_foreach((json_t *)models, name, e)
			if (entry_check(name, e, err))
				return GN_EINVAL;
		*out = json_pack("{s:i,s:O}", "format", 2, "models", models);
		return 0;
	}
	/* An older agent's: one model, {"current", "previous", "held"}. */
	const json_t *cur = json_object_get(state, "current"), *prev = json_object_get(state, "previous");
	const json_t *held = json_object_get(state, "held");
	if ((cur && !json_is_null(cur) && !is_record(cur)) || (held && !json_is_string(held)))
		return gn_err_set(err, GN_EINVAL, "state.json is in neither the current nor the one-model format");
	json_t *m = json_object();
	*out_migrated = true;
	if (is_record(cur)) {
		name = gn_json_str(cur, "name");
		bool same = is_record(prev) && strcmp(gn_json_str(prev, "name"), name) == 0;
		json_object_set_new(m, name,
				    json_pack("{s:O,s:O,s:s}", "current", cur, "previous", same ? prev : json_null(),
					      "held", held ? json_string_value(held) : ""));
	}
	*out = json_pack("{s:i,s:o}", "format", 2, "models", m);
	return 0;
}
