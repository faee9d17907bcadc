/* ganglion-agent: the daemon on every edge node. Shared state of its modules.
 *
 * Data directory layout (every file written atomically: temp file, fsync, rename):
 *   identity/key.pem        the device's Ed25519 private key (0600)
 *   identity/device.json    {"device_id", "server_url"}
 *   trust/image/ROLE.json   trusted image-repository metadata (root, timestamp, snapshot, targets)
 *   trust/director/ROLE.json trusted director metadata (root, targets)
 *   trust/clock             the newest signed time seen (the agent's clock never goes below it)
 *   downloads/SHA256.part   a download in progress (resumed with HTTP Range after a restart)
 *   models/SHA256           verified model files (0400); each model's current and previous version
 *                           are kept, a file that failed to load or to self-test is removed
 *   state.json              {"format": 2, "models": {NAME: {"current": {...}, "previous": {...} or
 *                           null, "held": "SHA256 ASSIGNED_AT" or ""}}}: one entry per model the
 *                           device runs (state_models_parse reads the one-model format of older
 *                           agents, {"current", "previous", "held"}, too)
 *   last_operation.json     the last update attempt reported ({"state", "model", "version", "at", "detail"})
 *   last_failure.json       the last one that failed (kept when a later one succeeds), for `status`
 *   profiles/SHA256.json    reference profiles of installed versions (checked against their signed
 *                           SHA-256 whenever read)
 *   telemetry/              the telemetry spool (layout in telemetry.h)
 */
#ifndef GA_AGENT_H
#define GA_AGENT_H

#include <pthread.h>
#include <stdatomic.h>

#include <jansson.h>

#include "common.h"
#include "conf.h"
#include "crypto.h"
#include "latency.h"
#include "../agents/runtimes/runtime.h"

struct MHD_Daemon;

#define AGENT_VERSION PACKAGE_VERSION

struct agent_config {
	char *config;
	char *server_url;
	char *ca_file;
	char *pinned_pubkey;
	char *client_cert;
	char *client_key;
	char *data_dir;
	char *runtime_plugin;
	char *runtime_target;
	char *runtime_options;
	char *socket_path;
	char *log_level;
	int64_t poll_min;
	int64_t poll_max;
	int64_t backoff_max;
	int64_t download_deadline;
	int64_t download_min_rate;
	int64_t max_infer_body;
	int64_t threads;
	int64_t telemetry_window;
	int64_t telemetry_spool_max;
	int64_t telemetry_batch;
	int64_t test_free_memory_mb;
};

extern const gn_conf_table agent_config_table;

/* One loaded model version. Reference-counted: its slot holds one reference and every request
 * in flight holds one, so a swapped-out model is freed when its last request finishes. */
struct agent_model {
	_Atomic int refs;
	ganglion_rt_model *rt_model;
	const ganglion_rt_model_info *info; /* borrowed from rt_model */
	char name[64];
	char version[72];
	char sha256[65];
	char target[16];    /* the target that really runs it */
	char self_test[16]; /* "passed", or "none" for a release without a sample */
	int64_t since;      /* when it began to serve (its counters count from then) */
	/* Health since it began to serve, counted on the hot path with relaxed atomics: requests,
	 * errors, latency (sum, max, and a histogram on lib/latency.h's fixed buckets). */
	_Atomic uint64_t requests, errors, latency_us_sum, latency_us_max;
	_Atomic uint64_t latency_buckets[GN_LATENCY_NBUCKETS];
	/* this version's telemetry window (telemetry.h; owned), NULL while it does not serve */
	struct telemetry_counter *telemetry;
};

/* One model the device runs, by name: the version that serves, the one kept for a rollback, and
 * how its updates go. Slots are created when the director first names a model and removed when
 * it no longer does. */
struct agent_slot {
	char name[64];
	struct agent_model *current; /* under agent.lock; NULL until a version serves */
	json_t *last_op;             /* this model's last update operation (owned, under agent.lock) */
	/* The rest under agent.update_lock. */
	json_t *previous;  /* {"name","version","sha256"} of the version kept for a rollback, or NULL */
	char held[96];     /* a target not to install ("SHA256 ASSIGNED_AT": failed for good, or rolled back) */
	char try_key[96];  /* the target the attempts below are for */
	int attempts;      /* install attempts of try_key so far */
	int64_t retry_at;  /* when to try try_key again (0: not waiting) */
	bool paused;       /* under agent.lock: a swap without room for both versions; requests wait */
	bool try_for_good; /* the last failure was the target's own (bad bytes, self-test), not transient */
};

struct agent {
	struct agent_config cfg;
	char device_id[40];
	gn_ed25519_key *key;
	/* bearer token from the challenge-response, refreshed before it expires */
	char token[128];
	int64_t token_expires;
	char etag[32];
	/* the runtime plugin */
	void *dl;
	const ganglion_runtime *rt;
	/* what `runtime-info` found, while the plugin is not loaded here (facts.c; owned, or NULL) */
	json_t *runtime_probe;
	/* the settings main() was given (borrowed from argv), for that child's command line */
	char **settings_argv;
	int settings_argc;
	/* serving: the slots (one per model) and each slot's `current` change under `lock`; readers
	 * take a reference on the model they use */
	pthread_mutex_t lock;
	pthread_cond_t resumed; /* with lock: a slot's pause ended */
	struct agent_slot **slots;
	size_t nslots;
	/* the last update attempt of any model, reported at the next check-in (owned, under lock) */
	json_t *last_op;
	_Atomic uint64_t infer_total, infer_errors;
	int64_t clock_floor;
	/* set by the signal thread on SIGTERM/SIGINT; long transfers check it and stop */
	_Atomic bool stopping;
	pthread_cond_t wake;
	pthread_mutex_t wake_lock;
	/* held while a model is being changed: an update (main loop) or a rollback (socket) */
	pthread_mutex_t update_lock;
	/* the local inference endpoint (serve.c) */
	struct MHD_Daemon *daemon;
	/* telemetry (telemetry_agent.c): the spool, and the thread that rolls windows into it */
	struct telemetry_spool *spool;
	pthread_t telemetry_thread;
	pthread_mutex_t telemetry_lock;
	pthread_cond_t telemetry_wake;
	bool telemetry_stop;            /* under telemetry_lock */
	uint64_t telemetry_plain_since; /* monotonic ns of a 415 to a gzip batch: send them uncompressed for a while
					 * (0: gzip; main loop only) */
};

/* config.c */
int agent_config_check(const struct agent_config *c, gn_err *err) GN_WUR;

/* state.c: files under the data directory */
char *state_path(const struct agent *a, const char *rel);
int state_mkdirs(const struct agent *a, gn_err *err) GN_WUR;
int state_read_json(json_t **out, const struct agent *a, const char *rel, gn_err *err) GN_WUR;
int state_write_json(const struct agent *a, const char *rel, const json_t *j, gn_err *err) GN_WUR;
int state_write_bytes(const struct agent *a, const char *rel, const char *data, size_t len, gn_err *err) GN_WUR;
int state_load_identity(struct agent *a, gn_err *err) GN_WUR;
/* Turns a state.json as read (state, borrowed) into the current format, {"format": 2, "models":
 * {NAME: {"current", "previous", "held"}}} in *out (new). The one-model format of older agents
 * ({"current", "previous", "held"}) becomes its model's entry, *out_migrated set; a previous
 * version of another model than the current one is dropped (the format kept one of each name
 * since). GN_EINVAL when neither format reads. Pure. */
int state_models_parse(json_t **out, bool *out_migrated, const json_t *state, gn_err *err) GN_WUR;
/* Raises the clock floor to t (a signed time) and persists it. */
void state_clock_seen(struct agent *a, int64_t t);
int64_t state_now(const struct agent *a);

/* client.c: talking to gangliond */
int client_enroll(struct agent *a, const char *enroll_token, const char *name, gn_err *err) GN_WUR;
int client_ensure_token(struct agent *a, gn_err *err) GN_WUR;
/* GET (token-authenticated) into *out (new buffer, NUL-terminated), at most max bytes; GN_ENOTFOUND on 404. */
int client_get(char **out, size_t *out_len, struct agent *a, const char *path, size_t max, gn_err *err) GN_WUR;
/* POSTs body (JSON text) with the device's token, once more with a fresh token after a 401;
 * *out_status is the answer's status. An error only when there was no answer. */
int client_post_status(int *out_status, struct agent *a, const char *path, const char *body, gn_err *err) GN_WUR;
/* The same with len bytes of body sent as Content-Encoding: encoding (e.g. "gzip"; NULL: none). */
int client_post_encoded(int *out_status, struct agent *a, const char *path, const char *body, size_t len,
			const char *encoding, gn_err *err) GN_WUR;
/* Checks in; with report_only the answer is not used and the ETag is left alone (progress
 * reports during an install must not hide a newer desired state from the next check-in). */
int client_checkin(json_t **out, bool *out_unchanged, struct agent *a, bool report_only, gn_err *err) GN_WUR;

/* facts.c: what this device has */
/* Returns the facts the agent reports at check-in (new): agent_version, os, arch, hostname,
 * ram_bytes and runtime ({name, version, targets: [{name, device, mem_total_bytes}],
 * configured_target, loaded}); while the plugin is not loaded, its facts come
 * from one run of `runtime-info` in a child process (docs/OPERATIONS.md). */
json_t *facts_collect(struct agent *a);
/* The runtime-info command: loads the plugin, prints its facts as JSON; returns the exit status. */
int facts_runtime_info(struct agent *a);

/* models.c: runtime plugin, loading, self-test, swap */
/* Opens the runtime plugin unless it is open (models_load() does, for the first model: an agent
 * with nothing to serve keeps no inference engine in memory). Call under update_lock, or before
 * the socket serves. */
int models_open_runtime(struct agent *a, gn_err *err) GN_WUR;
/* Checks that the runtime plugin's file is there to be opened later. */
int models_check_runtime(const struct agent *a, gn_err *err) GN_WUR;
/* Returns the plugin's facts (new): its name, version and targets when it is loaded, else its
 * file and configured target. */
json_t *models_runtime_facts(struct agent *a);
/* A model file's bytes, read once: what the agent hashes is what the runtime loads, whatever
 * happens to the file afterwards. */
struct models_file {
	unsigned char *data; /* owned; models_file_cleanup */
	size_t len;
};
/* Reads the regular file at path (not a symlink) into out, which the caller cleans up.
 * GN_ENOTFOUND when it does not exist, GN_ERROR when it cannot be read or held in memory. */
int models_file_load(struct models_file *out, const char *path, gn_err *err) GN_WUR;
void models_file_cleanup(struct models_file *f);
/* Loads a model version into the runtime from bytes (borrowed), only when they hash to sha256
 * (GN_EAUTH otherwise); sets *out to a new model with one reference. GN_EINVAL when the runtime
 * cannot load it. */
int models_load(struct agent_model **out, struct agent *a, const struct models_file *bytes, const char *name,
		const char *version, const char *sha256, gn_err *err) GN_WUR;
/* A release's sample, decoded: the values of each input and the expected values of each output,
 * by tensor name (owned; models_sample_cleanup). */
struct models_tensor {
	char *name;
	double *data;
	size_t n;
};
struct models_sample {
	struct models_tensor *in, *out;
	size_t nin, nout;
	double tolerance;
};
void models_sample_cleanup(struct models_sample *s);
/* Runs the sample's inputs through m (twice: the first run warms it up) and compares the outputs
 * with the expected ones within the tolerance; GN_EINVAL saying which value differs otherwise. */
int models_self_test(struct agent *a, struct agent_model *m, const struct models_sample *s, gn_err *err) GN_WUR;
/* Starts a swap without room for both versions: new requests for s wait (models_get), its model
 * is taken out, and once the requests in flight on it are done its memory is released. Call with
 * update_lock held; end it with models_resume. */
void models_pause(struct agent *a, struct agent_slot *s);
/* Ends slot s's pause: the waiting requests go on with what serves now. */
void models_resume(struct agent *a, struct agent_slot *s);
/* Makes m the version of slot s that serves (takes over the caller's reference; m NULL unloads)
 * and drops the old one; it begins to count its health from now. */
void models_swap(struct agent *a, struct agent_slot *s, struct agent_model *m);
/* Returns the model called name that serves, with a reference (release with models_unref), or
 * NULL. While its slot is paused (a swap without room for both versions) it waits for the pause to
 * end, at most MODELS_PAUSE_WAIT_S seconds. */
#define MODELS_PAUSE_WAIT_S 60
struct agent_model *models_get(struct agent *a, const char *name);
/* Returns the slot of model name (borrowed; the caller holds update_lock), or NULL; with create,
 * a new empty slot when there is none. */
struct agent_slot *models_slot(struct agent *a, const char *name, bool create);
/* Removes slot s and releases its model (the caller holds update_lock). */
void models_slot_remove(struct agent *a, struct agent_slot *s);
/* Releases every slot and its model, at shutdown. */
void models_release_all(struct agent *a);
void models_unref(struct agent *a, struct agent_model *m);
/* Every serving model, each with a reference (models_unref them), in *out (a new array, freed by
 * the caller); returns how many. */
size_t models_serving(struct agent_model ***out, struct agent *a);
/* Why m runs elsewhere than asked, or what part of it does ("" when all of it runs on the requested
 * target); borrowed from the runtime, valid while m is. */
const char *models_target_detail(const struct agent_model *m);
/* Runs one inference on m. */
int models_infer(struct agent *a, struct agent_model *m, const ganglion_rt_input *in, size_t nin,
		 ganglion_rt_output *out, size_t nout, gn_err *err) GN_WUR;

/* download.c */
int download_artifact(struct agent *a, const char *sha256, uint64_t length, char **out_path, gn_err *err) GN_WUR;

/* update.c: one check-in and whatever update it brings (the caller holds a->update_lock): every
 * model the director names is installed, swapped or left as it is, each on its own; a model it no
 * longer names is unloaded. A failed install is tried again later (update_retry_wait). */
int update_once(struct agent *a, int64_t *out_poll, gn_err *err) GN_WUR;
/* Returns wait (seconds until the next check-in after a successful one), shortened so that the
 * main loop wakes when the next install to try again comes due (one due already waits for the
 * next check-in). The caller holds a->update_lock. */
int64_t update_retry_wait(struct agent *a, int64_t wait);
/* Loads every model of state.json at start-up (re-verifying each file); an older agent's
 * one-model state.json is rewritten in the current format. A model that cannot be loaded is
 * reported and left out; the others serve. */
int update_restore(struct agent *a, gn_err *err) GN_WUR;
/* Swaps the previous version of model name back in (its file re-verified), or of the only model
 * when name is NULL (GN_ECONFLICT when there are several), and keeps the rolled-back one from
 * being reinstalled until the director names another target (the caller holds a->update_lock). */
int update_rollback(struct agent *a, const char *name, gn_err *err) GN_WUR;
/* Records the last operation (state + detail) of model (NULL: of no model in particular) for the
 * next check-in and the log. */
void update_report(struct agent *a, const char *state, const char *model, const char *version, const char *detail);

/* shape.c: an input's shape from the values a request gives */
/* Fills in->ndim and in->shape for `count` values of the model input ti. Without a given shape
 * (given NULL): the model's shape with its one dynamic dimension (-1 or 0) solved from count; an
 * input with two or more dynamic dimensions cannot be shaped from a count alone. With one:
 * given_ndim dimensions, each at least 1, that agree with the model's fixed ones and hold count
 * values. GN_EINVAL naming the input when the values do not fit. */
int shape_solve(ganglion_rt_input *in, const ganglion_rt_tensor_info *ti, size_t count, const int64_t *given,
		int given_ndim, gn_err *err) GN_WUR;

/* serve.c: the local inference endpoint on a Unix socket */
int serve_start(struct agent *a, gn_err *err) GN_WUR;
/* Stops the endpoint (waiting for requests in flight) and removes its socket; fine if not started. */
void serve_stop(struct agent *a);

/* telemetry_agent.c: each serving version's window counters (telemetry.h), rolled into the spool
 * under DATA_DIR/telemetry by a thread of their own and uploaded by the main loop */
/* Opens the spool and starts the thread that rolls windows. */
int agent_telemetry_start(struct agent *a, gn_err *err) GN_WUR;
/* Stops the thread, keeps the serving versions' open windows in the spool for the next start. */
void agent_telemetry_stop(struct agent *a);
/* Gives m, as it begins to serve, its counter on its kept reference profile (none without). */
void agent_telemetry_attach(struct agent *a, struct agent_model *m);
/* Spools m's last window and frees its counter, as it stops serving for good. */
void agent_telemetry_detach(struct agent *a, struct agent_model *m);
/* Fetches model@version's reference profile, when its signed target names one, and keeps it
 * (checked against the signed SHA-256) for the version's counter; a failure is logged, not fatal. */
void agent_telemetry_fetch_profile(struct agent *a, const char *model, const char *version);
/* Uploads what the spool holds, batch after batch while the server takes them (main loop only: it
 * uses the device's token). */
void agent_telemetry_upload(struct agent *a);

/* tuf_client_cmd.c: `ganglion-agent tuf-client`, a TUF client on the command line over any static
 * repository (init, refresh, download); returns the exit status, 0 or 1. */
int tuf_client_cmd_main(const struct agent_config *cfg, int argc, char **argv);

#endif
