/* Drift alert rules and the alerts job: see alerts.h. */
#include "alerts.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "audit.h"
#include "drift.h"
#include "http_client.h"
#include "log.h"
#include "model.h"
#include "selector.h"
#include "telemetry.h"

#define LOOKBACK_S 86400 /* windows older than a day are not judged */
#define EXTRA_WINDOWS 20 /* windows read past `windows`, to skip those with too few values */
#define FEATURE_LABEL_MAX 80

const gn_json_field alerts_rule_fields[] = {
	{"name", GN_JSON_STRING, true, false},          {"model", GN_JSON_STRING, true, false},
	{"version", GN_JSON_STRING, false, true},       {"feature", GN_JSON_STRING, false, true},
	{"metric", GN_JSON_STRING, false, false},       {"threshold", GN_JSON_NUMBER, false, false},
	{"min_samples", GN_JSON_INTEGER, false, false}, {"windows", GN_JSON_INTEGER, false, false},
	{"group_by", GN_JSON_STRING, false, true},      {"webhook", GN_JSON_STRING, false, true},
};
const size_t alerts_rule_nfields = GN_ARRAY_LEN(alerts_rule_fields);

#define RULE_JSON_WITH(webhook)                                                                              \
	"jsonb_build_object('name', r.name, 'model', r.model, 'version', r.version, 'feature', r.feature,"   \
	" 'metric', r.metric, 'threshold', r.threshold, 'min_samples', r.min_samples, 'windows', r.windows," \
	" 'group_by', r.group_by, 'webhook', " webhook ", 'created_by', r.created_by, 'created_at',"         \
	" gn_ts(r.created_at))::text"
/* The rule as its creator (an operator) sent it. */
#define RULE_JSON RULE_JSON_WITH("r.webhook")
/* The rule as any reader sees it: a webhook URL often holds its secret (Slack's and Teams' put it
 * in the path), so only its scheme and host are shown, without user information. */
#define RULE_JSON_READER                                                                                    \
	RULE_JSON_WITH("CASE WHEN r.webhook IS NULL THEN NULL ELSE regexp_replace(substring(r.webhook FROM" \
		       " '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*'), '://[^@]*@', '://') || '/...' END")
#define ALERT_JSONB                                                                                           \
	"jsonb_build_object('id', a.id, 'rule', a.rule, 'model', a.model, 'version', a.version, 'feature',"   \
	" a.feature, 'group', a.group_value, 'metric', a.metric, 'threshold', a.threshold, 'value', a.value," \
	" 'samples', a.samples, 'state', CASE WHEN a.resolved_at IS NULL THEN 'open' ELSE 'resolved' END,"    \
	" 'opened_at', gn_ts(a.opened_at), 'resolved_at', gn_ts(a.resolved_at), 'last_window',"               \
	" gn_ts(a.last_window))"
#define ALERT_JSON ALERT_JSONB "::text"

const db_stmt alerts_rules_list_stmt = {"alerts_rules_list",
					"SELECT " RULE_JSON_READER
					", r.name FROM alert_rules r WHERE ($1::text IS NULL OR r.name > $1)"
					" ORDER BY r.name COLLATE \"C\" LIMIT $2",
					2};
const db_stmt alerts_list_stmt = {
	"alerts_list",
	"SELECT " ALERT_JSON ", a.id::text FROM alerts a"
	" WHERE ($1 = 'all' OR ($1 = 'open') = (a.resolved_at IS NULL))"
	" AND ($2::text IS NULL OR a.model = $2) AND ($3::bigint IS NULL OR a.id < $3::bigint)"
	" ORDER BY a.id DESC LIMIT $4",
	4};
static const db_stmt st_model = {"alerts_model", "SELECT 1 FROM models WHERE name = $1", 1};
static const db_stmt st_insert_rule = {
	"alerts_insert_rule",
	"INSERT INTO alert_rules AS r (name, model, version, feature, metric, threshold, min_samples, windows, group_by,"
	" created_by, webhook) VALUES ($1, $2, $3, $4, $5, $6::float8, $7::bigint, $8::int, $9, $10, $11)"
	" RETURNING " RULE_JSON,
	11};
static const db_stmt st_delete_rule = {"alerts_delete_rule", "DELETE FROM alert_rules WHERE name = $1 RETURNING id", 1};
static const db_stmt st_resolve_rule = {
	"alerts_resolve_rule",
	"UPDATE alerts SET resolved_at = now() WHERE rule_id = (SELECT id FROM alert_rules WHERE name = $1)"
	" AND resolved_at IS NULL RETURNING id, model, version, feature, group_value",
	1};
static const db_stmt st_rules = {
	"alerts_rules_all",
	"SELECT id, name, model, version, feature, metric, threshold, min_samples, windows, group_by FROM alert_rules"
	" ORDER BY name COLLATE \"C\"",
	0};
/* Per version, the latest ($4) window starts since $3; per feature and group, the counts merged
 * across devices in each of them: (version, start, group, part, idx, counts, underflow, overflow,
 * n), newest first within each series. */
static const db_stmt st_series = {
	"alerts_series",
	"WITH s AS (SELECT version, window_start FROM (SELECT version, window_start, dense_rank() OVER"
	"   (PARTITION BY version ORDER BY window_start DESC) AS rk FROM (SELECT DISTINCT version, window_start"
	"   FROM telemetry_windows WHERE model = $1 AND ($2::text IS NULL OR version = $2)"
	"   AND window_start >= to_timestamp($3::bigint)) x) y WHERE rk <= $4::int)"
	" SELECT f.version, extract(epoch FROM f.window_start)::bigint,"
	"  CASE WHEN $5::text IS NULL THEN NULL ELSE d.labels->>$5 END AS grp, f.part, f.idx,"
	"  gn_array_sum(f.counts)::text, sum(f.underflow), sum(f.overflow), sum(f.n)"
	" FROM telemetry_features f JOIN s ON s.version = f.version AND s.window_start = f.window_start"
	" JOIN devices d ON d.id = f.device_id"
	" WHERE f.model = $1 AND f.part IN ('input', 'output', 'intensity') AND f.window_start >= to_timestamp($3::bigint)"
	" GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 3 NULLS FIRST, 4, 5, 2 DESC",
	5};
static const db_stmt st_open_alerts = {
	"alerts_open",
	"SELECT id, version, feature, coalesce(group_value, '') FROM alerts WHERE rule_id = $1 AND resolved_at IS NULL",
	1};
static const db_stmt st_open = {
	"alerts_open_insert",
	"INSERT INTO alerts (rule_id, rule, model, version, feature, group_value, metric, threshold, value, samples,"
	" last_window) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::float8, $9::float8, $10::bigint, to_timestamp($11::bigint))"
	" ON CONFLICT DO NOTHING RETURNING id",
	11};
static const db_stmt st_update = {"alerts_update",
				  "UPDATE alerts SET value = $2::float8, samples = $3::bigint, last_window ="
				  " to_timestamp($4::bigint) WHERE id = $1::bigint AND resolved_at IS NULL",
				  4};
/* Queues the webhook delivery of alert $1's change $2 (alert.open or alert.resolve), when its rule
 * has a webhook, and wakes the alert_webhooks job; returns the rows queued. */
static const db_stmt st_deliver = {
	"alerts_deliver",
	"WITH d AS (INSERT INTO alert_deliveries (alert_id, rule, url, event, payload)"
	"  SELECT a.id, a.rule, r.webhook, $2::text, jsonb_build_object('event', $2::text, 'alert', " ALERT_JSONB ")"
	"  FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE a.id = $1::bigint AND r.webhook IS NOT NULL"
	"  RETURNING id)"
	" SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('gn_jobs', 'alert_webhooks') END FROM d",
	2};
/* The deliveries due, oldest first: (id, url, payload, attempts). */
static const db_stmt st_due = {
	"alerts_deliveries_due",
	"SELECT id, url, payload::text, attempts FROM alert_deliveries WHERE delivered_at IS NULL AND given_up_at IS NULL"
	" AND next_at <= now() ORDER BY next_at, id LIMIT $1::int",
	1};
/* Records an attempt: ($1 id, $2 status or NULL, $3 error or NULL, $4 delivered, $5 seconds to
 * the next attempt or NULL to give up). */
static const db_stmt st_attempt = {
	"alerts_delivery_attempt",
	"UPDATE alert_deliveries SET attempts = attempts + 1, last_status = $2::int, last_error = $3,"
	" delivered_at = CASE WHEN $4::boolean THEN now() END,"
	" given_up_at = CASE WHEN NOT $4::boolean AND $5::int IS NULL THEN now() END,"
	" next_at = CASE WHEN $5::int IS NULL THEN next_at ELSE now() + make_interval(secs => $5::int) END"
	" WHERE id = $1::bigint",
	5};
static const db_stmt st_resolve = {
	"alerts_resolve",
	"UPDATE alerts SET resolved_at = now(), value = $2::float8, samples = $3::bigint,"
	" last_window = to_timestamp($4::bigint) WHERE id = $1::bigint AND resolved_at IS NULL"
	" RETURNING id",
	4};

/* --- rules ------------------------------------------------------------------------------------ */

static int rule_name_check(const char *name, gn_err *err)
{
	gn_err e;
	if (gn_model_name_check(name, &e))
		return gn_err_set(
			err, GN_EINVAL,
			"rule name '%.64s' is not a lower-case DNS label (a-z, 0-9 and '-', 1 to 63 characters, "
			"no leading or trailing '-')",
			name);
	return 0;
}

/* A rule's feature must be one of the version's profile when a version is named. */
static int feature_check(db_conn *c, const char *model, const char *version, const char *feature, gn_err *err)
{
	struct gn_drift_profile *p = NULL;
	char label[FEATURE_LABEL_MAX + 16];
	int rc;
	if (!feature) { /* the version must exist all the same */
		rc = version ? telemetry_profile_load(&p, c, model, version, err) : 0;
		gn_drift_profile_free(p);
		return rc;
	}
	if (!*feature || strlen(feature) > FEATURE_LABEL_MAX)
		return gn_err_set(err, GN_EINVAL, "feature must be 1 to %d characters", FEATURE_LABEL_MAX);
	if (!version)
		return 0;
	if ((rc = telemetry_profile_load(&p, c, model, version, err)))
		return rc;
	bool found = false;
	static const char *const parts[] = {"input", "output", "intensity"};
	for (size_t k = 0; p && k < GN_ARRAY_LEN(parts) && !found; k++)
		for (int i = 0; !found; i++) {
			const struct gn_drift_feature *f = telemetry_feature_of(p, parts[k], i);
			if (!f)
				break;
			telemetry_feature_label(label, sizeof(label), parts[k], f->name);
			found = strcmp(f->name, feature) == 0 || strcmp(label, feature) == 0;
		}
	gn_drift_profile_free(p);
	if (!found)
		return gn_err_set(err, GN_EINVAL, "feature '%s' is not in the reference profile of %s@%s", feature,
				  model, version);
	return 0;
}

/* Checks the numbers and fills in the defaults: threshold, min_samples, windows as text. */
static int rule_numbers(char thr[32], char mins[24], char wins[16], const char **metric, const json_t *req, gn_err *err)
{
	const json_t *t = json_object_get(req, "threshold"), *m = json_object_get(req, "min_samples"),
		     *w = json_object_get(req, "windows");
	*metric = gn_json_str(req, "metric") ? gn_json_str(req, "metric") : "psi";
	if (strcmp(*metric, "psi") != 0 && strcmp(*metric, "js") != 0 && strcmp(*metric, "linf") != 0)
		return gn_err_set(err, GN_EINVAL, "metric must be psi, js or linf");
	double th = t ? json_number_value(t) : strcmp(*metric, "psi") == 0 ? 0.25 : 0.1;
	if (!isfinite(th) || th <= 0 || th > 1e6)
		return gn_err_set(err, GN_EINVAL, "threshold must be a number above 0");
	int64_t ms = m ? (int64_t)json_integer_value(m) : 1000, ws = w ? (int64_t)json_integer_value(w) : 3;
	if (ms < 1)
		return gn_err_set(err, GN_EINVAL, "min_samples must be at least 1");
	if (ws < 1 || ws > 100)
		return gn_err_set(err, GN_EINVAL, "windows must be 1 to 100");
	snprintf(thr, 32, "%.17g", th);
	snprintf(mins, 24, "%lld", (long long)ms);
	snprintf(wins, 16, "%lld", (long long)ws);
	return 0;
}

/* A webhook is an absolute http or https URL with a host, up to 2048 characters. */
static int webhook_check(const char *url, gn_err *err)
{
	if (!url)
		return 0;
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	bool ok = u && strlen(url) <= ALERTS_WEBHOOK_MAX && !curl_url_set(u, CURLUPART_URL, url, 0) &&
		  !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) && !curl_url_get(u, CURLUPART_HOST, &host, 0) &&
		  (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && *host &&
		  (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0);
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	if (!ok)
		return gn_err_set(err, GN_EINVAL,
				  "webhook must be an http:// or https:// URL with a host, up to %d characters",
				  ALERTS_WEBHOOK_MAX);
	return 0;
}

int alerts_rule_create(char **out, db_conn *c, const struct gd_actor *who, const json_t *req, gn_err *err)
{
	PGresult *res = NULL;
	char thr[32], mins[24], wins[16], label[128];
	const char *name = gn_json_str(req, "name"), *model = gn_json_str(req, "model"),
		   *version = gn_json_str(req, "version"), *feature = gn_json_str(req, "feature"),
		   *by = gn_json_str(req, "group_by"), *webhook = gn_json_str(req, "webhook"), *metric;
	struct gn_semver sv;
	gn_err e;
	int rc;
	*out = NULL;
	if ((rc = rule_name_check(name, err)) || (rc = gn_model_name_check(model, err)) ||
	    (version && (rc = gn_model_version_parse(&sv, version, err))) ||
	    (rc = rule_numbers(thr, mins, wins, &metric, req, err)) || (rc = webhook_check(webhook, err)))
		return rc;
	if (by && gn_label_key_check(by, &e))
		return gn_err_set(err, GN_EINVAL, "group_by must be a label key: %s", e.msg);
	const char *pm[] = {model};
	if ((rc = db_exec(&res, c, &st_model, pm, err)))
		return rc;
	bool known = PQntuples(res) > 0;
	PQclear(res);
	res = NULL;
	if (!known)
		return gn_err_set(err, GN_ENOTFOUND, "no such model '%s'", model);
	if ((rc = feature_check(c, model, version, feature, err)))
		return rc;
	actor_label(label, sizeof(label), who);
	const char *p[] = {name, model, version, feature, metric, thr, mins, wins, by, label, webhook};
	if ((rc = db_tx_begin(c, err)))
		return rc;
	if ((rc = db_exec(&res, c, &st_insert_rule, p, err))) {
		if (rc == GN_ECONFLICT)
			gn_err_set(err, GN_ECONFLICT, "an alert rule named %s exists already", name);
		goto out;
	}
	json_t *detail = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	if ((rc = audit_write(c, who, "alert_rule.create", "alert_rule", name, detail, err)) ||
	    (rc = db_tx_commit(c, err)))
		goto out;
	*out = gn_strdup(PQgetvalue(res, 0, 0));
out:
	if (rc)
		db_tx_rollback(c);
	PQclear(res);
	return rc;
}

/* Queues alert id's webhook delivery of event, if its rule has a webhook (in the caller's
 * transaction). */
static int deliver(db_conn *c, const char *id, const char *event, gn_err *err)
{
	const char *p[] = {id, event};
	return db_exec(NULL, c, &st_deliver, p, err);
}

int alerts_rule_delete(db_conn *c, const struct gd_actor *who, const char *name, gn_err *err)
{
	PGresult *res = NULL, *del = NULL;
	const char *p[] = {name};
	int rc;
	if ((rc = db_tx_begin(c, err)) || (rc = db_exec(&res, c, &st_resolve_rule, p, err)))
		goto out;
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s}", "rule", name, "model", PQgetvalue(res, i, 1),
				      "version", PQgetvalue(res, i, 2), "feature", PQgetvalue(res, i, 3), "group",
				      db_val(res, i, 4), "reason", "rule deleted");
		if ((rc = audit_write(c, who, "alert.resolve", "alert", PQgetvalue(res, i, 0), d, err)) ||
		    (rc = deliver(c, PQgetvalue(res, i, 0), "alert.resolve", err)))
			goto out;
	}
	if ((rc = db_exec(&del, c, &st_delete_rule, p, err)))
		goto out;
	if (PQntuples(del) == 0) {
		rc = gn_err_set(err, GN_ENOTFOUND, "no alert rule named '%s'", name);
		goto out;
	}
	if ((rc = audit_write(c, who, "alert_rule.delete", "alert_rule", name, NULL, err)) ||
	    (rc = db_tx_commit(c, err)))
		goto out;
out:
	if (rc)
		db_tx_rollback(c);
	PQclear(res);
	PQclear(del);
	return rc;
}

int alerts_list_check(const char **out_state, const char *state, const char *model, gn_err *err)
{
	*out_state = state ? state : "open";
	if (strcmp(*out_state, "open") != 0 && strcmp(*out_state, "resolved") != 0 && strcmp(*out_state, "all") != 0)
		return gn_err_set(err, GN_EINVAL, "query parameter 'state' must be open, resolved or all");
	if (model && gn_model_name_check(model, err))
		return GN_EINVAL;
	return 0;
}

/* --- the alerts job --------------------------------------------------------------------------- */

struct rule {
	const char *id, *name, *model, *version, *feature, *metric, *by; /* borrowed from the rules result */
	double threshold;
	uint64_t min_samples;
	int windows;
};

/* What a series' last windows say. */
struct verdict {
	int judged;   /* windows with enough values, up to rule.windows */
	int above;    /* of which over the threshold */
	double value; /* the newest one's */
	uint64_t samples;
	int64_t start; /* the newest one's start */
};

/* Profiles of the versions a rule's series name, loaded once per run of a rule. */
struct profiles {
	char **versions;
	struct gn_drift_profile **p;
	size_t n;
};

static void profiles_cleanup(struct profiles *ps)
{
	for (size_t i = 0; i < ps->n; i++) {
		free(ps->versions[i]);
		gn_drift_profile_free(ps->p[i]);
	}
	free(ps->versions);
	free(ps->p);
	memset(ps, 0, sizeof(*ps));
}

static const struct gn_drift_profile *profile_for(struct profiles *ps, db_conn *c, const char *model,
						  const char *version)
{
	gn_err e;
	for (size_t i = 0; i < ps->n; i++)
		if (strcmp(ps->versions[i], version) == 0)
			return ps->p[i];
	ps->versions = gn_realloc(ps->versions, (ps->n + 1) * sizeof(char *));
	ps->p = gn_realloc(ps->p, (ps->n + 1) * sizeof(*ps->p));
	ps->versions[ps->n] = gn_strdup(version);
	if (telemetry_profile_load(&ps->p[ps->n], c, model, version, &e))
		ps->p[ps->n] = NULL;
	return ps->p[ps->n++];
}

static double metric_of(const struct gn_drift_measure *m, const char *metric)
{
	return strcmp(metric, "psi") == 0 ? m->psi : strcmp(metric, "js") == 0 ? m->js : m->linf;
}

/* Judges one window of a series (row r of st_series) into v. */
static void judge_window(struct verdict *v, const PGresult *res, int r, const struct gn_drift_feature *f,
			 const struct rule *rule)
{
	struct gn_drift_counts c;
	struct gn_drift_measure m;
	const char *s = PQgetvalue(res, r, 5);
	size_t k = 0;
	if (v->judged >= rule->windows)
		return;
	gn_drift_counts_init(&c, f->nbins);
	if (*s == '{')
		for (s++; *s && *s != '}' && k < c.nbins; k++) {
			char *end;
			c.counts[k] = strtoull(s, &end, 10);
			s = *end == ',' ? end + 1 : end;
		}
	c.underflow = strtoull(PQgetvalue(res, r, 6), NULL, 10);
	c.overflow = strtoull(PQgetvalue(res, r, 7), NULL, 10);
	c.n = strtoull(PQgetvalue(res, r, 8), NULL, 10);
	if (k == c.nbins && c.n >= rule->min_samples) {
		gn_drift_compare(&m, f, &c);
		double x = metric_of(&m, rule->metric);
		if (isfinite(x)) {
			if (v->judged == 0) {
				v->value = x;
				v->samples = c.n;
				v->start = strtoll(PQgetvalue(res, r, 1), NULL, 10);
			}
			v->judged++;
			v->above += x > rule->threshold;
		}
	}
	gn_drift_counts_cleanup(&c);
}

/* The open alert of (version, feature, group) among open (st_open_alerts' rows), or -1. */
static int open_alert(const PGresult *open, const char *version, const char *feature, const char *grp)
{
	for (int i = 0; i < PQntuples(open); i++)
		if (strcmp(PQgetvalue(open, i, 1), version) == 0 && strcmp(PQgetvalue(open, i, 2), feature) == 0 &&
		    strcmp(PQgetvalue(open, i, 3), grp ? grp : "") == 0)
			return i;
	return -1;
}

static json_t *alert_detail(const struct rule *rule, const char *version, const char *feature, const char *grp,
			    const struct verdict *v)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s?,s:s,s:f,s:f,s:I,s:i}", "rule", rule->name, "model", rule->model,
			 "version", version, "feature", feature, "group", grp, "metric", rule->metric, "threshold",
			 rule->threshold, "value", v->value, "samples", (json_int_t)v->samples, "windows", v->judged);
}

/* Opens, updates or resolves the alert of one series as its verdict says. */
static int act(db_conn *c, const struct rule *rule, const PGresult *open, const char *version, const char *feature,
	       const char *grp, const struct verdict *v, gn_err *err)
{
	struct gd_actor who;
	PGresult *res = NULL;
	char value[32], samples[24], start[24], thr[32];
	int i = open_alert(open, version, feature, grp), rc = 0;
	bool breach = v->judged == rule->windows && v->above == v->judged;
	bool clear = v->judged == rule->windows && v->above == 0;
	if ((i < 0 && !breach) || (i >= 0 && !breach && !clear))
		return 0;
	snprintf(value, sizeof(value), "%.17g", v->value);
	snprintf(samples, sizeof(samples), "%llu", (unsigned long long)v->samples);
	snprintf(start, sizeof(start), "%lld", (long long)v->start);
	snprintf(thr, sizeof(thr), "%.17g", rule->threshold);
	actor_system(&who, "alerts");
	if (i >= 0 && breach) { /* still open: its latest value */
		const char *p[] = {PQgetvalue(open, i, 0), value, samples, start};
		return db_exec(NULL, c, &st_update, p, err);
	}
	if ((rc = db_tx_begin(c, err)))
		return rc;
	if (i < 0) {
		const char *p[] = {rule->id,     rule->name, rule->model, version, feature, grp,
				   rule->metric, thr,        value,       samples, start};
		if ((rc = db_exec(&res, c, &st_open, p, err)))
			goto out;
		if (PQntuples(res) && ((rc = audit_write(c, &who, "alert.open", "alert", PQgetvalue(res, 0, 0),
							 alert_detail(rule, version, feature, grp, v), err)) ||
				       (rc = deliver(c, PQgetvalue(res, 0, 0), "alert.open", err))))
			goto out;
		gn_log(GN_LOG_WARN,
		       "event=alert_open rule=%s model=%s version=%s feature=%s group=%s %s=%g samples=%llu",
		       rule->name, rule->model, version, feature, grp ? grp : "", rule->metric, v->value,
		       (unsigned long long)v->samples);
	} else {
		const char *p[] = {PQgetvalue(open, i, 0), value, samples, start};
		if ((rc = db_exec(&res, c, &st_resolve, p, err)))
			goto out;
		if (PQntuples(res) && ((rc = audit_write(c, &who, "alert.resolve", "alert", PQgetvalue(res, 0, 0),
							 alert_detail(rule, version, feature, grp, v), err)) ||
				       (rc = deliver(c, PQgetvalue(res, 0, 0), "alert.resolve", err))))
			goto out;
		gn_log(GN_LOG_INFO, "event=alert_resolved rule=%s model=%s version=%s feature=%s group=%s %s=%g",
		       rule->name, rule->model, version, feature, grp ? grp : "", rule->metric, v->value);
	}
	rc = db_tx_commit(c, err);
out:
	if (rc)
		db_tx_rollback(c);
	PQclear(res);
	return rc;
}

static bool same_series(const PGresult *res, int a, int b)
{
	for (int col = 0; col < 5; col++) {
		if (col == 1)
			continue; /* the window's start */
		if (PQgetisnull(res, a, col) != PQgetisnull(res, b, col) ||
		    strcmp(PQgetvalue(res, a, col), PQgetvalue(res, b, col)) != 0)
			return false;
	}
	return true;
}

static bool feature_matches(const struct rule *rule, const struct gn_drift_feature *f, const char *label)
{
	return !rule->feature || strcmp(rule->feature, f->name) == 0 || strcmp(rule->feature, label) == 0;
}

static int judge_rule(db_conn *c, const struct rule *rule, int64_t now, gn_err *err)
{
	PGresult *res = NULL, *open = NULL;
	struct profiles ps = {0};
	char since[24], limit[16], label[FEATURE_LABEL_MAX + 16];
	int rc;
	snprintf(since, sizeof(since), "%lld", (long long)(now - LOOKBACK_S));
	snprintf(limit, sizeof(limit), "%d", rule->windows + EXTRA_WINDOWS);
	const char *p[] = {rule->model, rule->version, since, limit, rule->by};
	const char *po[] = {rule->id};
	if ((rc = db_exec(&res, c, &st_series, p, err)) || (rc = db_exec(&open, c, &st_open_alerts, po, err)))
		goto out;
	for (int r = 0, n = PQntuples(res); r < n;) {
		int end = r + 1;
		while (end < n && same_series(res, r, end))
			end++;
		const char *version = PQgetvalue(res, r, 0), *grp = db_val(res, r, 2), *part = PQgetvalue(res, r, 3);
		const struct gn_drift_profile *prof = profile_for(&ps, c, rule->model, version);
		const struct gn_drift_feature *f =
			prof ? telemetry_feature_of(prof, part, atoi(PQgetvalue(res, r, 4))) : NULL;
		if (f) {
			telemetry_feature_label(label, sizeof(label), part, f->name);
			if (feature_matches(rule, f, label)) {
				struct verdict v = {0};
				for (int k = r; k < end; k++)
					judge_window(&v, res, k, f, rule);
				if ((rc = act(c, rule, open, version, label, grp, &v, err)))
					goto out;
			}
		}
		r = end;
	}
out:
	profiles_cleanup(&ps);
	PQclear(res);
	PQclear(open);
	return rc;
}

int alerts_tick(db_conn *c, int64_t now, gn_err *err)
{
	PGresult *rules = NULL;
	int rc = db_exec(&rules, c, &st_rules, NULL, err), failed = 0;
	for (int i = 0; !rc && i < PQntuples(rules); i++) {
		struct rule r = {
			.id = PQgetvalue(rules, i, 0),
			.name = PQgetvalue(rules, i, 1),
			.model = PQgetvalue(rules, i, 2),
			.version = db_val(rules, i, 3),
			.feature = db_val(rules, i, 4),
			.metric = PQgetvalue(rules, i, 5),
			.threshold = strtod(PQgetvalue(rules, i, 6), NULL),
			.min_samples = strtoull(PQgetvalue(rules, i, 7), NULL, 10),
			.windows = atoi(PQgetvalue(rules, i, 8)),
			.by = db_val(rules, i, 9),
		};
		gn_err e;
		/* one rule's failure does not keep the others from being judged */
		if (judge_rule(c, &r, now, &e)) {
			gn_log(GN_LOG_WARN, "event=alert_rule_failed rule=%s msg=\"%s\"", r.name, e.msg);
			if (!failed++)
				*err = e;
		}
	}
	PQclear(rules);
	return rc ? rc : failed ? err->code : 0;
}

/* --- webhooks --------------------------------------------------------------------------------- */

/* Seconds before attempt n + 1 after n failed ones: 1, 2, 4, ... up to an hour. */
static int backoff_s(int attempts)
{
	int s = 1;
	for (int i = 1; i < attempts && s < 3600; i++)
		s *= 2;
	return s < 3600 ? s : 3600;
}

/* Writes msg into out with the webhook URL in it cut to its scheme and host: the error of a failed
 * delivery is logged and stored, and the URL's path, query or user information may be the
 * receiver's secret. msg may hold the URL cut short (an error message's size is bounded), so
 * what follows its scheme and host up to the next blank is dropped, whatever it is. */
static void redact_url(char *out, size_t n, const char *msg, const char *url)
{
	size_t scheme = strcspn(url, ":");
	if (!scheme || strncmp(url + scheme, "://", 3) != 0) {
		snprintf(out, n, "the delivery failed (its error names the URL, which is not shown)");
		return;
	}
	size_t host = scheme + 3 + strcspn(url + scheme + 3, "/?#");
	const char *at = memchr(url + scheme + 3, '@', host - scheme - 3);
	const char *h = at ? at + 1 : url + scheme + 3;
	gn_buf b;
	gn_buf_init(&b);
	for (const char *p = msg;;) {
		const char *hit = strstr(p, url + scheme); /* "://...", with or without the scheme before */
		if (!hit) {
			gn_buf_puts(&b, p);
			break;
		}
		gn_buf_append(&b, p, (size_t)(hit - p));
		gn_buf_puts(&b, "://");
		gn_buf_append(&b, h, (size_t)(url + host - h));
		gn_buf_puts(&b, "/...");
		for (p = hit + 3; *p && *p != ' ' && *p != '\t' && *p != '\n'; p++)
			;
	}
	snprintf(out, n, "%.190s", b.len ? b.data : "");
	gn_buf_cleanup(&b);
}

int alerts_webhooks_tick(db_conn *c, gn_err *err)
{
	PGresult *due = NULL;
	char limit[16];
	snprintf(limit, sizeof(limit), "%d", ALERTS_WEBHOOK_BATCH);
	const char *pd[] = {limit};
	int rc = db_exec(&due, c, &st_due, pd, err);
	for (int i = 0; !rc && i < PQntuples(due); i++) {
		const char *id = PQgetvalue(due, i, 0), *url = PQgetvalue(due, i, 1);
		int attempts = atoi(PQgetvalue(due, i, 3)) + 1;
		json_t *body = json_loads(PQgetvalue(due, i, 2), 0, NULL);
		json_object_set_new(body, "delivery", json_integer(strtoll(id, NULL, 10)));
		char *text = gn_json_dump(body);
		json_decref(body);
		gn_http_resp resp = {0};
		gn_err e = {0};
		gn_http_req req = {.method = "POST",
				   .url = url,
				   .body = text,
				   .body_len = strlen(text),
				   .content_type = "application/json",
				   .timeout_s = ALERTS_WEBHOOK_TIMEOUT_S,
				   .max_response = 64 * 1024};
		int hr = gn_http_do(&resp, &req, &e);
		bool ok = !hr && resp.status >= 200 && resp.status < 300;
		char status[16], next[16], why[200];
		snprintf(status, sizeof(status), "%ld", resp.status);
		snprintf(next, sizeof(next), "%d", backoff_s(attempts));
		if (hr)
			redact_url(why, sizeof(why), e.msg, url);
		else
			snprintf(why, sizeof(why), "HTTP %ld", resp.status);
		bool give_up = !ok && attempts >= ALERTS_WEBHOOK_ATTEMPTS;
		const char *pa[] = {id, hr ? NULL : status, ok ? NULL : why, ok ? "true" : "false",
				    ok || give_up ? NULL : next};
		if (ok)
			gn_log(GN_LOG_INFO, "event=alert_webhook_delivered delivery=%s attempts=%d status=%ld", id,
			       attempts, resp.status);
		else
			gn_log(GN_LOG_WARN,
			       "event=alert_webhook_failed delivery=%s attempts=%d why=\"%s\" retry_in_s=%s", id,
			       attempts, why, give_up ? "never" : next);
		gn_http_resp_cleanup(&resp);
		free(text);
		rc = db_exec(NULL, c, &st_attempt, pa, err);
	}
	PQclear(due);
	return rc;
}

/* --- metrics ---------------------------------------------------------------------------------- */

static const db_stmt st_metrics_open = {
	"alerts_metrics_open",
	"SELECT rule, model, version, feature, metric, count(*), max(value) FROM alerts WHERE resolved_at IS NULL"
	" GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
	0};
static const db_stmt st_metrics_webhooks = {
	"alerts_metrics_webhooks",
	"SELECT count(*) FILTER (WHERE delivered_at IS NULL AND given_up_at IS NULL),"
	" count(*) FILTER (WHERE given_up_at IS NOT NULL) FROM alert_deliveries",
	0};

int alerts_metrics(gn_buf *b, db_conn *c, gn_err *err)
{
	PGresult *open = NULL, *hooks = NULL;
	int rc;
	if ((rc = db_exec(&open, c, &st_metrics_open, NULL, err)) ||
	    (rc = db_exec(&hooks, c, &st_metrics_webhooks, NULL, err))) {
		PQclear(open);
		return rc;
	}
	static const char *const names[] = {"rule", "model", "version", "feature", "metric"};
	gn_buf_puts(b, "# HELP gangliond_alerts_open Open drift alerts, by rule, model, version, feature and metric.\n"
		       "# TYPE gangliond_alerts_open gauge\n");
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1)
			gn_buf_puts(b,
				    "# HELP gangliond_alert_value The largest value of the open alerts' metric, in the "
				    "latest window judged.\n"
				    "# TYPE gangliond_alert_value gauge\n");
		for (int i = 0; i < PQntuples(open); i++) {
			gn_buf_puts(b, pass ? "gangliond_alert_value{" : "gangliond_alerts_open{");
			for (int k = 0; k < 5; k++) {
				gn_buf_printf(b, "%s%s=\"", k ? "," : "", names[k]);
				gn_prom_label(b, PQgetvalue(open, i, k));
				gn_buf_puts(b, "\"");
			}
			gn_buf_printf(b, "} %s\n", PQgetvalue(open, i, pass ? 6 : 5));
		}
	}
	gn_buf_printf(b,
		      "# HELP gangliond_alert_webhook_deliveries Alert webhook deliveries not yet delivered: pending "
		      "(to be retried) or given up.\n"
		      "# TYPE gangliond_alert_webhook_deliveries gauge\n"
		      "gangliond_alert_webhook_deliveries{state=\"pending\"} %s\n"
		      "gangliond_alert_webhook_deliveries{state=\"given_up\"} %s\n",
		      PQgetvalue(hooks, 0, 0), PQgetvalue(hooks, 0, 1));
	PQclear(open);
	PQclear(hooks);
	return 0;
}
