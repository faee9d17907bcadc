/* The agent's telemetry: per loaded model version, counters of the window being counted (requests,
 * errors, latency, and each feature of the version's reference profile on its bins, with
 * lib/drift.c), turned into a report when the window ends; reports go to a bounded spool on disk
 * first and are uploaded in batches, deleted only once the server has them. Independent of the
 * rest of the agent (it knows runtime.h's tensors, not struct agent), so it is unit-tested alone.
 *
 * Windows are aligned on the epoch (a window of W seconds starts at a multiple of W), as the
 * server wants them. A report is POST /v1/agent/telemetry's window object (docs/TELEMETRY.md);
 * its id is (model, version, start), which the server counts once however often it is sent.
 *
 * Spool directory layout (every file written atomically, fsynced):
 *   START-MODEL@VERSION.json  one report per file; names sort by window start
 *   dropped                   windows dropped (spool full, or refused by the server) and not yet
 *                             reported: sent as the first window's "dropped" of the next batch
 *   open/MODEL@VERSION.json   the counts of a window still open, kept at shutdown and taken up
 *                             again at start-up (or spooled, if its window has ended since) */
#ifndef GA_TELEMETRY_H
#define GA_TELEMETRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "drift.h"
#include "../agents/runtimes/runtime.h"

#define TELEMETRY_SHARDS 8           /* counters per model, so threads seldom share a lock */
#define TELEMETRY_IMAGE_SAMPLES 1024 /* pixels per channel an inference's image is sampled at, at most */
/* Significant digits of the reals in what is sent (means, variances, extremes): inputs are float32
 * (7 digits), and the counts, which drift is computed from, are integers. */
#define TELEMETRY_REAL_DIGITS 9

struct telemetry_counter;

/* A counter for model@version (copied) with windows of window_s seconds, counting on profile
 * (taken over; NULL: requests, errors and latency only). inputs and outputs name the model's
 * tensors in its order (copied), for features that read "the first" tensor. */
struct telemetry_counter *telemetry_counter_new(const char *model, const char *version,
						struct gn_drift_profile *profile, const char *const *inputs,
						size_t ninputs, const char *const *outputs, size_t noutputs,
						int64_t window_s);
void telemetry_counter_free(struct telemetry_counter *c);
/* Returns the counter's model and version (borrowed). */
const char *telemetry_counter_model(const struct telemetry_counter *c);
const char *telemetry_counter_version(const struct telemetry_counter *c);

/* The drift of the window being counted, without closing it: per input feature (*out_in,
 * profile->ninputs) and output feature (*out_out, profile->noutputs) of the counter's profile,
 * gn_drift_compare of the counts so far (new arrays; both NULL and 0 without a profile), and the
 * window's start. Thread-safe: takes the roll lock, then each shard's lock in turn, as a roll does. */
const struct gn_drift_profile *telemetry_counter_profile(const struct telemetry_counter *c);
void telemetry_drift(struct telemetry_counter *c, int64_t *out_start, struct gn_drift_measure **out_in,
		     struct gn_drift_measure **out_out);

/* Counts one inference: its outcome, latency and (when the profile has features) the values its
 * inputs and outputs hold where the profile's features read them. A feature whose tensor or
 * element is not in this request counts nothing. Thread-safe; takes one of TELEMETRY_SHARDS
 * locks, chosen per thread. outputs may be NULL (a failed inference). */
void telemetry_record(struct telemetry_counter *c, bool error, uint64_t latency_us, const ganglion_rt_input *in,
		      size_t nin, const ganglion_rt_output *out, size_t nout);

/* When the window being counted has ended by now (or at once with force), turns it into a report
 * in *out (new; NULL when the window saw no request) and starts the next. */
void telemetry_roll(json_t **out, struct telemetry_counter *c, int64_t now, bool force);

/* Returns j as sent and spooled (new): compact, reals to TELEMETRY_REAL_DIGITS digits. */
char *telemetry_json_text(const json_t *j);

/* The counts of the open window ({"start", "report"}; new), for a restart. */
json_t *telemetry_checkpoint(struct telemetry_counter *c);
/* Takes up a checkpoint: its counts are merged into the open window when it is the same window
 * as now's; when its window has ended, it is returned as a report in *out_closed (new) instead.
 * GN_EINVAL for a checkpoint of another model version or with other bins. */
int telemetry_restore(json_t **out_closed, struct telemetry_counter *c, const json_t *checkpoint, int64_t now,
		      gn_err *err) GN_WUR;

/* Checks a reference profile's bytes against the SHA-256 its signed target states (hex) and parses
 * them into *out (new). GN_EINVAL when they differ or do not parse. */
int telemetry_profile_parse(struct gn_drift_profile **out, const char *bytes, size_t len, const char *sha256_hex,
			    gn_err *err) GN_WUR;

struct telemetry_spool;
/* Opens (creating) the spool in dir, holding at most max_windows reports. */
int telemetry_spool_open(struct telemetry_spool **out, const char *dir, size_t max_windows, gn_err *err) GN_WUR;
void telemetry_spool_free(struct telemetry_spool *s);
/* Writes a report durably. When the spool is full the oldest reports are removed first and
 * counted as dropped. */
int telemetry_spool_put(struct telemetry_spool *s, const json_t *report, gn_err *err) GN_WUR;
/* Reports waiting, and windows dropped and not yet reported. */
size_t telemetry_spool_count(struct telemetry_spool *s);
uint64_t telemetry_spool_dropped(struct telemetry_spool *s);
/* Keeps the open window of c in the spool (open/), to take up at the next start. */
int telemetry_spool_keep_open(struct telemetry_spool *s, struct telemetry_counter *c, gn_err *err) GN_WUR;
/* Takes up what telemetry_spool_keep_open kept for c's model version (removing it): counts of the
 * current window go back into c; an ended window is spooled as a report. */
int telemetry_spool_take_open(struct telemetry_spool *s, struct telemetry_counter *c, int64_t now, gn_err *err) GN_WUR;

/* Sends one batch (JSON text) to the server; 0 with the answer's HTTP status, or an error when
 * there was no answer. */
typedef int (*telemetry_send_fn)(void *ctx, const char *body, size_t len, int *out_status, gn_err *err);
/* Uploads the oldest reports, up to max_batch of them, in one request, the count of dropped
 * windows with the first: on 200 they leave the spool; on a refusal of the batch itself (400,
 * 403, 409, 413 of a single report) they are dropped and counted, as the server will never take
 * them (a 413 of several halves the next batch instead); on anything else (no answer, 401, 429,
 * 5xx) they stay for the next try (GN_EUNAVAIL). *out_sent counts the reports that left the
 * spool. */
int telemetry_spool_upload(size_t *out_sent, struct telemetry_spool *s, size_t max_batch, telemetry_send_fn send,
			   void *ctx, gn_err *err) GN_WUR;

/* After a 415 to a gzip batch, how long batches go plain before gzip is tried again: the 415 may
 * have come from one older replica, or a proxy, in the middle of an upgrade. */
#define TELEMETRY_GZIP_RETRY_NS (3600ull * 1000000000ull)
/* Whether the next batch goes gzipped at monotonic time now (ns), given *plain_since: the time
 * of the last 415 to a gzip batch, 0 for none. Clears it once TELEMETRY_GZIP_RETRY_NS have
 * passed. */
bool telemetry_gzip_next(uint64_t *plain_since, uint64_t now);

#endif
