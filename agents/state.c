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
	static const char *const dirs[] = {"",          "identity", "trust", "trust/image", "trust/director",
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
