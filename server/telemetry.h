/* Telemetry: the window summaries agents send (checked against the model version's reference
 * profile and stored in tables partitioned by day), the partitions' upkeep, and the fleet's drift
 * per model version, merged across devices and compared with the profile by lib/drift.c. Domain
 * layer. docs/TELEMETRY.md describes the wire format. */
#ifndef GD_TELEMETRY_H
#define GD_TELEMETRY_H

#include <jansson.h>

#include "canary.h"
#include "db.h"
#include "json.h"

/* The fields of POST /v1/agent/telemetry's body, for gd_body_json and the fuzzer. */
extern const gn_json_field telemetry_batch_fields[];
extern const size_t telemetry_batch_nfields;

#define TELEMETRY_MIN_SECONDS 10    /* shortest window */
#define TELEMETRY_MAX_SECONDS 86400 /* longest window */
#define TELEMETRY_CLOCK_SKEW 300    /* how far past the server's clock a window may end */
#define TELEMETRY_DAYS_AHEAD 2      /* partitions made ahead of today */

struct telemetry_limits {
	int64_t max_windows; /* per batch (telemetry-max-windows) */
	int64_t retention_s; /* telemetry-retention: older windows are acknowledged, not stored */
	int64_t now;         /* the server's clock, seconds since the epoch */
};

/* Checks and stores a batch (a body that passed telemetry_batch_fields) that device device_id
 * sent: every window is for a model version whose director targets the device got name (or
 * named before), with counts on that version's reference profile; all of them or none are
 * stored. A window already stored (same device, model, version and start) counts once; one that
 * ended before the retention is acknowledged and not stored. *out is {"accepted", "duplicates",
 * "expired"} (new). Errors: GN_EINVAL naming the window and field, GN_EFORBIDDEN (another
 * device's id, a version the device does not run), GN_ETOOBIG (more than max_windows). Own
 * transaction. */
int telemetry_ingest(json_t **out, db_conn *c, const char *device_id, const json_t *body,
		     const struct telemetry_limits *lim, gn_err *err) GN_WUR;

/* Makes the partitions of yesterday up to TELEMETRY_DAYS_AHEAD days ahead (UTC) and drops those
 * of days wholly older than retention_s; *out_created and *out_dropped count days. Each step in
 * its own statement (no transaction of the caller's). */
int telemetry_partitions(int *out_created, int *out_dropped, db_conn *c, int64_t now, int64_t retention_s,
			 gn_err *err) GN_WUR;

/* What the fleet's drift covers: windows starting in [since, until), devices matching selector
 * (NULL: all), grouped by the value of label `by` (NULL: one group). */
struct telemetry_query {
	int64_t since, until;
	const char *selector, *by; /* borrowed */
};
/* Reads GET .../drift's query values: since and until are RFC 3339 times or durations back from
 * now ("90m", "1h", "7d"; since defaults to 1h, until to now), selector a label selector, by a
 * label key. GN_EINVAL naming the parameter. */
int telemetry_query_parse(struct telemetry_query *out, const char *since, const char *until, const char *selector,
			  const char *by, int64_t now, gn_err *err) GN_WUR;
/* The fleet's drift of model@version over q: per group, the windows' totals (requests, errors,
 * latency percentiles) and per feature of the reference profile its merged counts, moments and
 * PSI, JS distance and L-infinity against the reference. *out is new JSON text. GN_ENOTFOUND for
 * an unknown version; GN_ECONFLICT when it has no reference profile. A plain read. */
int telemetry_drift(char **out, db_conn *c, const char *model, const char *version, const struct telemetry_query *q,
		    gn_err *err) GN_WUR;
/* The same as JSON (*out new). */
int telemetry_drift_json(json_t **out, db_conn *c, const char *model, const char *version,
			 const struct telemetry_query *q, gn_err *err) GN_WUR;

/* The canary judgement (lib/canary.h) the rollout gates may use: 98 % confidence, at least 5
 * observations (device windows) a side, a score of 95 passes and 75 is marginal. */
#define TELEMETRY_CANARY_ALPHA 0.02
#define TELEMETRY_CANARY_MIN_OBSERVATIONS 5
#define TELEMETRY_CANARY_PASS_SCORE 95.0
#define TELEMETRY_CANARY_MARGINAL_SCORE 75.0
#define TELEMETRY_CANARY_ERROR_TOLERANCE 0.1   /* relative rise of the median error rate */
#define TELEMETRY_CANARY_LATENCY_TOLERANCE 0.2 /* of the median p95 latency */
#define TELEMETRY_CANARY_DRIFT_TOLERANCE 0.5   /* of the median output PSI */
/* Judges model@canary against model@control over q's windows (q.by unused), one observation per
 * device and window of each: error rate (weight 2), p95 latency (1) and, when both versions
 * profile their outputs, the outputs' PSI against each one's reference (1); each metric by a
 * two-sided Mann-Whitney U test with an effect-size tolerance, the weighted score giving pass,
 * marginal or fail, and too few observations on a side "inconclusive" (a stage holds on it).
 * *out is {"model","canary","control","since","until","selector","verdict","score","confidence",
 * "metrics":[{"name","weight","verdict","n_canary","n_control","u","p","median_canary",
 * "median_control","effect","tolerance"}]} (new text). GN_ENOTFOUND for an unknown version,
 * GN_EINVAL for one version as both. A plain read: the rollout controller's gates may call it. */
int telemetry_canary(char **out, db_conn *c, const char *model, const char *canary, const char *control,
		     const struct telemetry_query *q, gn_err *err) GN_WUR;
/* The same as JSON (*out new, with "pass_score" and "marginal_score"), scored against the
 * given scores (the rollout gate's), with the verdict and score (NaN when inconclusive) apart. */
int telemetry_canary_json(json_t **out, enum gn_canary_verdict *out_verdict, double *out_score, db_conn *c,
			  const char *model, const char *canary, const char *control, const struct telemetry_query *q,
			  double pass_score, double marginal_score, gn_err *err) GN_WUR;

/* The last windows device_id sent (newest first, at most limit, starting at or after since): per
 * window its model, version, start, seconds, requests, errors, error rate, latency percentiles,
 * dropped count, resources and, per feature of its version's profile, the counts and the PSI, JS
 * distance and L-infinity of that window alone. *out is {"device","since","windows"} (new text).
 * GN_ENOTFOUND for an unknown device. Opens its own (read-only, repeatable-read) transaction. */
int telemetry_device(char **out, db_conn *c, const char *device_id, int64_t since, int limit, gn_err *err) GN_WUR;

/* The name a feature goes by in drift answers and alerts: "input:NAME", "output:NAME",
 * "image:intensity". Writes into out. */
void telemetry_feature_label(char *out, size_t n, const char *part, const char *name);
/* The reference profile of model@version, parsed (new; NULL when the version has none). GN_ENOTFOUND
 * for an unknown version. A plain read. */
struct gn_drift_profile;
int telemetry_profile_load(struct gn_drift_profile **out, db_conn *c, const char *model, const char *version,
			   gn_err *err) GN_WUR;
/* Returns the feature of p that a stored row (part, idx) stands for, or NULL. */
const struct gn_drift_feature *telemetry_feature_of(const struct gn_drift_profile *p, const char *part, int idx);

#endif
