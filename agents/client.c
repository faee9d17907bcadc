/* The agent's conversation with gangliond: enrollment, challenge-response tokens, check-in,
 * authenticated GETs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "http_client.h"
#include "json.h"
#include "log.h"
#include "tuf.h"

#define AUTH_PREFIX "ganglion-device-auth:v1:"

/* body_len bytes of body, sent with Content-Encoding: encoding unless that is NULL. */
static int request_body(gn_http_resp *resp, struct agent *a, const char *method, const char *path, const char *body,
			size_t body_len, const char *encoding, const char *token, const char *inm, size_t max,
			gn_err *err)
{
	char *url = gn_asprintf("%s%s", a->cfg.server_url, path);
	gn_http_req req = {
		.method = method,
		.url = url,
		.token = token,
		.body = body,
		.body_len = body_len,
		.content_encoding = encoding,
		.if_none_match = inm,
		.timeout_s = 30,
		.max_response = max,
		.ca_file = a->cfg.ca_file,
		.pinned_pubkey = a->cfg.pinned_pubkey,
		.client_cert = a->cfg.client_cert,
		.client_key = a->cfg.client_key,
	};
	int rc = gn_http_do(resp, &req, err);
	free(url);
	return rc;
}

static int request(gn_http_resp *resp, struct agent *a, const char *method, const char *path, const char *body,
		   const char *token, const char *inm, size_t max, gn_err *err)
{
	return request_body(resp, a, method, path, body, body ? strlen(body) : 0, NULL, token, inm, max, err);
}

/* POSTs JSON without a bearer token and parses a JSON answer (2xx only). */
static int post_json(json_t **out, struct agent *a, const char *path, json_t *body, gn_err *err)
{
	gn_http_resp resp;
	char *s = gn_json_dump(body);
	int rc = request(&resp, a, "POST", path, s, NULL, NULL, 1 << 20, err);
	free(s);
	if (!rc && !(rc = gn_http_check(&resp, err))) {
		*out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		if (!*out)
			rc = gn_err_set(err, GN_ERROR, "%s answered something that is not JSON", path);
	}
	gn_http_resp_cleanup(&resp);
	return rc;
}

int client_ensure_token(struct agent *a, gn_err *err)
{
	json_t *ch = NULL, *tok = NULL;
	unsigned char sig[GN_ED25519_SIG_LEN];
	char sighex[2 * GN_ED25519_SIG_LEN + 1];
	int rc;
	if (a->token[0] && a->token_expires - gn_now() > 300)
		return 0;
	json_t *b1 = json_pack("{s:s}", "device_id", a->device_id);
	rc = post_json(&ch, a, "/v1/agent/auth/challenge", b1, err);
	json_decref(b1);
	if (rc)
		return rc;
	const char *nonce = gn_json_str(ch, "nonce");
	char *msg = gn_asprintf(AUTH_PREFIX "%s:%s", a->device_id, nonce ? nonce : "");
	rc = gn_ed25519_sign(sig, a->key, msg, strlen(msg), err);
	free(msg);
	if (rc)
		goto out;
	gn_hex_encode(sighex, sig, sizeof(sig));
	json_t *b2 =
		json_pack("{s:s,s:s,s:s}", "device_id", a->device_id, "nonce", nonce ? nonce : "", "signature", sighex);
	rc = post_json(&tok, a, "/v1/agent/auth/token", b2, err);
	json_decref(b2);
	if (rc)
		goto out;
	const char *t = gn_json_str(tok, "token");
	int64_t exp = 0;
	if (!t || strlen(t) >= sizeof(a->token) || gn_tuf_time_parse(&exp, gn_json_str(tok, "expires_at"))) {
		rc = gn_err_set(err, GN_ERROR, "the server's token answer is malformed");
		goto out;
	}
	snprintf(a->token, sizeof(a->token), "%s", t);
	/* Trust our own clock for the refresh margin, not the server's. */
	a->token_expires = gn_now() + (exp - gn_now() > 0 ? exp - gn_now() : 60);
	gn_log(GN_LOG_DEBUG, "event=device_token_refreshed");
out:
	json_decref(ch);
	json_decref(tok);
	return rc;
}

int client_get(char **out, size_t *out_len, struct agent *a, const char *path, size_t max, gn_err *err)
{
	gn_http_resp resp;
	int rc;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = client_ensure_token(a, err)))
			return rc;
		if ((rc = request(&resp, a, "GET", path, NULL, a->token, NULL, max, err)))
			return rc;
		if (resp.status == 401 && attempt == 0) {
			/* Expired or revoked early: get a fresh token once. */
			a->token[0] = '\0';
			gn_http_resp_cleanup(&resp);
			continue;
		}
		break;
	}
	if (resp.status == 404) {
		gn_http_resp_cleanup(&resp);
		return gn_err_set(err, GN_ENOTFOUND, "%s: not found", path);
	}
	if ((rc = gn_http_check(&resp, err))) {
		gn_http_resp_cleanup(&resp);
		return rc;
	}
	*out_len = resp.body.len;
	*out = gn_buf_detach(&resp.body);
	gn_http_resp_cleanup(&resp);
	return 0;
}

/* Report sequence numbers: every check-in carries the next one, and they only go up, across
 * restarts too, so the server can tell a replayed check-in from a new one. identity/report-seq
 * holds a ceiling: numbers below it may have been used. A block is reserved at a time (one
 * durable write per SEQ_BLOCK check-ins); a restart skips what was left of it. */
#define SEQ_FILE "identity/report-seq"
#define SEQ_BLOCK 1000

static pthread_mutex_t seq_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t seq_next, seq_ceiling; /* under seq_lock; seq_ceiling 0: not loaded yet */

/* Returns the next sequence number (> 0), or 0 after filling err when it cannot be made durable. */
static int64_t seq_take(struct agent *a, gn_err *err)
{
	int64_t seq = 0;
	pthread_mutex_lock(&seq_lock);
	if (!seq_ceiling) {
		char *path = state_path(a, SEQ_FILE);
		FILE *f = fopen(path, "re");
		long long v = 0;
		if (f) {
			if (fscanf(f, "%lld", &v) != 1 || v < 0)
				v = 0; /* the server's 409 tells where to resume */
			fclose(f);
		}
		free(path);
		seq_next = v > 0 ? v : 1;
		seq_ceiling = seq_next;
	}
	if (seq_next >= seq_ceiling) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%lld\n", (long long)(seq_next + SEQ_BLOCK));
		if (state_write_bytes(a, SEQ_FILE, buf, strlen(buf), err))
			goto out;
		seq_ceiling = seq_next + SEQ_BLOCK;
	}
	seq = seq_next++;
out:
	pthread_mutex_unlock(&seq_lock);
	return seq;
}

/* Continues above `last` (what the server recorded last: our counter went back, e.g. a data
 * directory restored from a backup). */
static void seq_skip_to(int64_t last)
{
	pthread_mutex_lock(&seq_lock);
	if (last >= seq_next)
		seq_next = last + 1;
	pthread_mutex_unlock(&seq_lock);
}

/* The last_seq of a 409 answer to a check-in, or -1. */
static int64_t conflict_last_seq(const gn_http_resp *resp)
{
	json_t *j = resp->status == 409 ? json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL)
					: NULL;
	json_t *v = json_object_get(j, "last_seq");
	int64_t last = json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
	json_decref(j);
	return last;
}

/* One model's entry of the report: the version that serves ("state": "active") with its health
 * since it began to serve (requests, errors, latency: max and a histogram on lib/latency.h's
 * buckets, "latency_us_buckets"), its self-test, and the model's last update operation; "state":
 * "none" while no version serves yet. Under a->lock. */
static json_t *model_report(const struct agent_slot *s)
{
	const struct agent_model *m = s->current;
	json_t *e;
	if (m) {
		char since[21];
		json_t *hist = json_array();
		for (size_t i = 0; i < GN_LATENCY_NBUCKETS; i++)
			json_array_append_new(hist, json_integer((json_int_t)atomic_load_explicit(
							    &m->latency_buckets[i], memory_order_relaxed)));
		gn_tuf_time(since, m->since);
		e = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "name", s->name, "version",
			      m->version, "sha256", m->sha256, "target", m->target, "target_detail",
			      models_target_detail(m), "state", "active", "since", since, "self_test", m->self_test,
			      "requests", (json_int_t)atomic_load(&m->requests), "errors",
			      (json_int_t)atomic_load(&m->errors), "latency_us_max",
			      (json_int_t)atomic_load(&m->latency_us_max), "latency_us_buckets", hist);
	} else {
		e = json_pack("{s:s,s:s}", "name", s->name, "state", "none");
	}
	if (s->last_op)
		json_object_set(e, "last_operation", s->last_op);
	return e;
}

int client_post_status(int *out_status, struct agent *a, const char *path, const char *body, gn_err *err)
{
	return client_post_encoded(out_status, a, path, body, strlen(body), NULL, err);
}

int client_post_encoded(int *out_status, struct agent *a, const char *path, const char *body, size_t len,
			const char *encoding, gn_err *err)
{
	gn_http_resp resp;
	int rc;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((rc = client_ensure_token(a, err)) ||
		    (rc = request_body(&resp, a, "POST", path, body, len, encoding, a->token, NULL, 1 << 20, err)))
			return rc;
		*out_status = resp.status;
		gn_http_resp_cleanup(&resp);
		if (*out_status != 401 || attempt)
			break;
		a->token[0] = '\0'; /* expired or revoked early: a fresh token once */
	}
	return 0;
}

int client_checkin(json_t **out, bool *out_unchanged, struct agent *a, bool report_only, gn_err *err)
{
	gn_http_resp resp;
	int rc;
	bool resynced = false;
	char *s = NULL;
	json_t *models = json_array();
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->nslots; i++)
		json_array_append_new(models, model_report(a->slots[i]));
	json_t *op = a->last_op ? json_incref(a->last_op) : json_null();
	pthread_mutex_unlock(&a->lock);
	json_t *body = json_pack("{s:s,s:o,s:o,s:o}", "agent_version", AGENT_VERSION, "models", models, "facts",
				 facts_collect(a), "last_operation", op);
	*out = NULL;
	*out_unchanged = false;
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!s) {
			int64_t seq = seq_take(a, err);
			if (!seq) {
				rc = GN_ERROR;
				goto out;
			}
			json_object_set_new(body, "seq", json_integer((json_int_t)seq));
			s = gn_json_dump(body);
		}
		if ((rc = client_ensure_token(a, err)))
			goto out;
		if ((rc = request(&resp, a, "POST", "/v1/agent/checkin", s, a->token, a->etag[0] ? a->etag : NULL,
				  8 << 20, err)))
			goto out;
		if (resp.status == 401 && attempt == 0) {
			a->token[0] = '\0';
			gn_http_resp_cleanup(&resp);
			continue;
		}
		int64_t last = conflict_last_seq(&resp);
		if (last >= 0 && !resynced) {
			/* The server recorded a higher number than ours: resume above it, once. */
			gn_log(GN_LOG_WARN, "event=report_seq_behind server_last=%lld", (long long)last);
			seq_skip_to(last);
			resynced = true;
			free(s);
			s = NULL;
			gn_http_resp_cleanup(&resp);
			continue;
		}
		break;
	}
	if (resp.status == 304) {
		*out_unchanged = true;
	} else if (!(rc = gn_http_check(&resp, err)) && !report_only) {
		*out = json_loadb(resp.body.data ? resp.body.data : "", resp.body.len, 0, NULL);
		if (!*out)
			rc = gn_err_set(err, GN_ERROR, "check-in answer is not JSON");
		else if (resp.etag && strlen(resp.etag) < sizeof(a->etag))
			snprintf(a->etag, sizeof(a->etag), "%s", resp.etag);
	}
	gn_http_resp_cleanup(&resp);
out:
	json_decref(body);
	free(s);
	return rc;
}

int client_enroll(struct agent *a, const char *enroll_token, const char *name, gn_err *err)
{
	json_t *ans = NULL, *dev = NULL;
	unsigned char pub[GN_ED25519_PUB_LEN];
	char pubhex[2 * GN_ED25519_PUB_LEN + 1];
	int rc;
	char *kp = state_path(a, "identity/key.pem");
	if ((rc = gn_ed25519_generate(&a->key, err)))
		goto out;
	gn_ed25519_public(pub, a->key);
	gn_hex_encode(pubhex, pub, sizeof(pub));
	json_t *b = json_pack("{s:s,s:s}", "token", enroll_token, "public_key", pubhex);
	if (name)
		json_object_set_new(b, "name", json_string(name));
	json_object_set_new(b, "facts", facts_collect(a));
	rc = post_json(&ans, a, "/v1/enroll", b, err);
	json_decref(b);
	if (rc)
		goto out;
	const char *id = gn_json_str(ans, "device_id");
	if (!id || strlen(id) >= sizeof(a->device_id)) {
		rc = gn_err_set(err, GN_ERROR, "the enrollment answer has no device_id");
		goto out;
	}
	snprintf(a->device_id, sizeof(a->device_id), "%s", id);
	/* The key first: a device.json without its key would be an identity nobody can use. */
	if ((rc = gn_ed25519_save(a->key, kp, err)))
		goto out;
	dev = json_pack("{s:s,s:s}", "device_id", id, "server_url", a->cfg.server_url);
	rc = state_write_json(a, "identity/device.json", dev, err);
out:
	json_decref(ans);
	json_decref(dev);
	free(kp);
	return rc;
}
