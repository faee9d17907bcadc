/* Signed device tokens and the in-memory revocation state every replica keeps. */
#include "device_tokens.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "crypto.h"
#include "log.h"
#include "notify.h"

#define KEY_NAME "device_token_hmac"
#define KEY_LEN 32
/* HMAC-SHA256 cut to its first 128 bits (RFC 2104 allows cutting to half): the token stays
 * under the 128 bytes that agents keep for it. */
#define MAC_LEN 16
#define MAC_HEX (2 * MAC_LEN)
/* How long a rotation waits to hear its own notification back (the other replicas hear it at
 * the same moment, from the same commit). */
#define ROTATE_WAIT_MS 2000

static const db_stmt st_key_put = {
	"device_tokens_key_put",
	"INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", 2};
static const db_stmt st_key_get = {"device_tokens_key_get", "SELECT secret FROM server_secrets WHERE name = $1", 1};
static const db_stmt st_state = {"device_tokens_state",
				 "SELECT id::text, token_generation, status <> 'active' FROM devices"
				 " WHERE token_generation > 0 OR status <> 'active'",
				 0};
static const db_stmt st_device = {"device_tokens_device",
				  "SELECT token_generation, status <> 'active' FROM devices WHERE id = $1", 1};
/* The trigger of migrations/0013 tells every replica (gn_device_tokens). */
static const db_stmt st_rotate = {
	"device_tokens_rotate",
	"WITH d AS (UPDATE devices SET token_generation = token_generation + 1 WHERE id = $1 AND status = 'active'"
	"   RETURNING id, token_generation),"
	" s AS (DELETE FROM device_sessions WHERE device_id IN (SELECT id FROM d) RETURNING 1)"
	" SELECT token_generation, (SELECT count(*) FROM s) FROM d",
	1};
/* The replicas listening now (notify.c names its connection). */
static const db_stmt st_listeners = {"device_tokens_listeners",
				     "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
				     " AND application_name = $1",
				     1};
static const db_stmt st_status = {"device_tokens_status", "SELECT status FROM devices WHERE id = $1", 1};

static unsigned char key_[KEY_LEN];
static _Atomic bool have_key;
static EVP_MAC *mac_;
static EVP_MAC_CTX *mac_template;
static pthread_key_t mac_tls;
static bool mac_tls_made;

/* --- the revocation state ---------------------------------------------------------------------- */

struct revoked {
	struct revoked *next;
	char id[37];
	int64_t min_gen; /* tokens of a lower generation are refused */
	bool dead;       /* decommissioned: every token is refused */
};

#define BUCKETS 4096
static struct revoked *buckets[BUCKETS];
static size_t nrevoked;
static pthread_rwlock_t state_lock = PTHREAD_RWLOCK_INITIALIZER;
static pthread_mutex_t heard_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heard = PTHREAD_COND_INITIALIZER;
static _Atomic bool listening, trusted, reload_wanted;
static _Atomic uint64_t listen_gen; /* bumped whenever listening starts or stops */

static size_t bucket_of(const char *id)
{
	return (size_t)(gn_fnv1a(0, id, strlen(id)) % BUCKETS);
}

static struct revoked *find(const char *id)
{
	for (struct revoked *e = buckets[bucket_of(id)]; e; e = e->next)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

/* Raises what is known of a device (never lowers it: the order of notifications and reloads
 * does not matter). */
static void merge(const char *id, int64_t gen, bool dead)
{
	if (!gn_is_uuid(id))
		return;
	pthread_rwlock_wrlock(&state_lock);
	struct revoked *e = find(id);
	if (!e) {
		e = gn_calloc(1, sizeof(*e));
		snprintf(e->id, sizeof(e->id), "%s", id);
		size_t b = bucket_of(id);
		e->next = buckets[b];
		buckets[b] = e;
		nrevoked++;
	}
	if (gen > e->min_gen)
		e->min_gen = gen;
	e->dead = e->dead || dead;
	pthread_rwlock_unlock(&state_lock);
	pthread_mutex_lock(&heard_lock);
	pthread_cond_broadcast(&heard);
	pthread_mutex_unlock(&heard_lock);
}

static enum device_token_verdict verdict_of(int64_t min_gen, bool dead, int64_t gen)
{
	if (dead)
		return DEVICE_TOKEN_DEAD;
	return gen < min_gen ? DEVICE_TOKEN_REVOKED : DEVICE_TOKEN_OK;
}

static enum device_token_verdict memory_verdict(const char *id, int64_t gen)
{
	if (!atomic_load(&trusted))
		return DEVICE_TOKEN_UNKNOWN;
	enum device_token_verdict v = DEVICE_TOKEN_OK;
	pthread_rwlock_rdlock(&state_lock);
	struct revoked *e = find(id);
	if (e)
		v = verdict_of(e->min_gen, e->dead, gen);
	pthread_rwlock_unlock(&state_lock);
	/* Checked again: a listener lost meanwhile may have missed a notification. */
	return atomic_load(&trusted) ? v : DEVICE_TOKEN_UNKNOWN;
}

void device_tokens_on_notify(const char *payload)
{
	char id[40], status[24];
	long long gen;
	if (sscanf(payload, "%39s %lld %23s", id, &gen, status) != 3 || !gn_is_uuid(id)) {
		/* Cannot tell which device: trust nothing until the state is read again. */
		gn_log(GN_LOG_WARN, "event=device_tokens_bad_notify len=%zu", strlen(payload));
		atomic_store(&trusted, false);
		atomic_store(&reload_wanted, true);
		return;
	}
	merge(id, (int64_t)gen, strcmp(status, "active") != 0);
}

void device_tokens_on_listening(bool up)
{
	atomic_store(&trusted, false);
	atomic_fetch_add(&listen_gen, 1);
	atomic_store(&listening, up);
	atomic_store(&reload_wanted, up);
	pthread_mutex_lock(&heard_lock);
	pthread_cond_broadcast(&heard);
	pthread_mutex_unlock(&heard_lock);
}

bool device_tokens_reload_wanted(void)
{
	return atomic_load(&reload_wanted);
}

int device_tokens_reload(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	if (!atomic_exchange(&reload_wanted, false))
		return 0;
	/* Read after LISTEN: whatever changes after this read arrives as a notification. */
	uint64_t gen0 = atomic_load(&listen_gen);
	int error = db_exec(&res, c, &st_state, NULL, err);
	if (error) {
		atomic_store(&reload_wanted, true);
		return error;
	}
	for (int i = 0; i < PQntuples(res); i++)
		merge(PQgetvalue(res, i, 0), strtoll(PQgetvalue(res, i, 1), NULL, 10),
		      strcmp(PQgetvalue(res, i, 2), "t") == 0);
	gn_log(GN_LOG_DEBUG, "event=device_tokens_reloaded devices=%d", PQntuples(res));
	PQclear(res);
	if (atomic_load(&listening) && atomic_load(&listen_gen) == gen0)
		atomic_store(&trusted, true);
	return 0;
}

size_t device_tokens_revoked_count(void)
{
	pthread_rwlock_rdlock(&state_lock);
	size_t n = nrevoked;
	pthread_rwlock_unlock(&state_lock);
	return n;
}

/* --- the key and the MAC ----------------------------------------------------------------------- */

static void mac_tls_free(void *ctx)
{
	EVP_MAC_CTX_free(ctx);
}

/* This thread's keyed MAC context (a copy of the template, made once per thread). */
static EVP_MAC_CTX *thread_mac(void)
{
	EVP_MAC_CTX *ctx = pthread_getspecific(mac_tls);
	if (!ctx) {
		ctx = EVP_MAC_CTX_dup(mac_template);
		if (ctx && pthread_setspecific(mac_tls, ctx) != 0) {
			EVP_MAC_CTX_free(ctx);
			ctx = NULL;
		}
	}
	return ctx;
}

/* HMAC-SHA256 of msg under the shared key; false when OpenSSL fails. */
static bool token_mac(unsigned char out[32], const char *msg, size_t len)
{
	EVP_MAC_CTX *ctx = atomic_load(&have_key) ? thread_mac() : NULL;
	size_t outl = 0;
	/* A NULL key re-initialises with the key the template was given. */
	return ctx && EVP_MAC_init(ctx, NULL, 0, NULL) == 1 &&
	       EVP_MAC_update(ctx, (const unsigned char *)msg, len) == 1 && EVP_MAC_final(ctx, out, &outl, 32) == 1 &&
	       outl == 32;
}

int device_tokens_use_key(const unsigned char key[32], gn_err *err)
{
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
			       OSSL_PARAM_construct_end()};
	memcpy(key_, key, KEY_LEN);
	if (!mac_tls_made) {
		if (pthread_key_create(&mac_tls, mac_tls_free) != 0)
			return gn_err_set(err, GN_ERROR, "cannot create the thread key of the device token MAC");
		mac_tls_made = true;
	}
	if (!(mac_ = EVP_MAC_fetch(NULL, "HMAC", NULL)) || !(mac_template = EVP_MAC_CTX_new(mac_)) ||
	    EVP_MAC_init(mac_template, key_, sizeof(key_), params) != 1) {
		device_tokens_cleanup();
		return gn_err_set(err, GN_ERROR, "OpenSSL cannot set up HMAC-SHA256 for device tokens");
	}
	atomic_store(&have_key, true);
	return 0;
}

int device_tokens_init(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	unsigned char raw[KEY_LEN], key[KEY_LEN];
	char hex[2 * KEY_LEN + 1];
	int error;
	if ((error = gn_random_bytes(raw, sizeof(raw), err)))
		return error;
	gn_hex_encode(hex, raw, sizeof(raw));
	const char *pp[] = {KEY_NAME, hex};
	const char *pg[] = {KEY_NAME};
	/* Replicas starting together: the first insert wins and every one reads the same key. */
	if ((error = db_exec(NULL, c, &st_key_put, pp, err)) || (error = db_exec(&res, c, &st_key_get, pg, err)))
		return error;
	if (PQntuples(res) != 1 || gn_hex_decode(key, sizeof(key), PQgetvalue(res, 0, 0)))
		error = gn_err_set(err, GN_ERROR, "the device token key in server_secrets is corrupt");
	PQclear(res);
	if (!error)
		error = device_tokens_use_key(key, err);
	memset(key, 0, sizeof(key));
	return error;
}

void device_tokens_cleanup(void)
{
	atomic_store(&have_key, false);
	atomic_store(&trusted, false);
	if (mac_tls_made) {
		EVP_MAC_CTX *ctx = pthread_getspecific(mac_tls);
		EVP_MAC_CTX_free(ctx);
		pthread_setspecific(mac_tls, NULL);
	}
	EVP_MAC_CTX_free(mac_template);
	EVP_MAC_free(mac_);
	mac_template = NULL;
	mac_ = NULL;
	memset(key_, 0, sizeof(key_));
	pthread_rwlock_wrlock(&state_lock);
	for (size_t b = 0; b < BUCKETS; b++) {
		while (buckets[b]) {
			struct revoked *n = buckets[b]->next;
			free(buckets[b]);
			buckets[b] = n;
		}
	}
	nrevoked = 0;
	pthread_rwlock_unlock(&state_lock);
}

/* --- minting and checking ---------------------------------------------------------------------- */

/* Token: "gnd_v2.ID.GEN.EXP.MAC", MAC the hex of the first MAC_LEN bytes of the HMAC-SHA256 of
 * everything before its dot. */
char *device_tokens_mint(const char *device_id, int64_t gen, int64_t exp)
{
	unsigned char mac[32];
	char hex[MAC_HEX + 1];
	char *body = gn_asprintf(DEVICE_TOKEN_PREFIX "%s.%lld.%lld", device_id, (long long)gen, (long long)exp);
	if (!token_mac(mac, body, strlen(body))) {
		free(body);
		return NULL;
	}
	gn_hex_encode(hex, mac, MAC_LEN);
	char *out = gn_asprintf("%s.%s", body, hex);
	free(body);
	return out;
}

bool device_tokens_is_signed(const char *token)
{
	return strncmp(token, DEVICE_TOKEN_PREFIX, strlen(DEVICE_TOKEN_PREFIX)) == 0;
}

/* Parses a decimal field of 1 to 18 digits ending at `end`; false otherwise. */
static bool parse_num(int64_t *out, const char *p, const char *end)
{
	int64_t v = 0;
	if (end <= p || end - p > 18)
		return false;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

int device_tokens_check(enum device_token_verdict *out_verdict, char out_id[40], int64_t *out_gen, const char *token,
			int64_t now, gn_err *err)
{
	unsigned char want[32], got[MAC_LEN];
	const size_t plen = strlen(DEVICE_TOKEN_PREFIX);
	*out_verdict = DEVICE_TOKEN_UNKNOWN;
	out_id[0] = '\0';
	/* prefix, ID (36), '.', GEN, '.', EXP, '.', MAC (32) */
	size_t len = strlen(token);
	if (len < plen + 36 + 1 + 1 + 1 + 1 + 1 + MAC_HEX || !device_tokens_is_signed(token))
		return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	const char *id = token + plen, *gen = id + 37, *mac = token + len - MAC_HEX;
	const char *dot_exp = memchr(gen, '.', (size_t)(mac - gen));
	int64_t g, exp;
	/* Lower-case hex only, as minted: one token has one spelling. */
	if (id[36] != '.' || mac[-1] != '.' || !dot_exp || !parse_num(&g, gen, dot_exp) ||
	    !parse_num(&exp, dot_exp + 1, mac - 1) || strspn(mac, "0123456789abcdef") != MAC_HEX ||
	    gn_hex_decode(got, sizeof(got), mac))
		return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	memcpy(out_id, id, 36);
	out_id[36] = '\0';
	if (!gn_is_uuid(out_id) || !token_mac(want, token, (size_t)(mac - 1 - token)) ||
	    !gn_consttime_eq(want, got, MAC_LEN)) {
		out_id[0] = '\0';
		return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	}
	if (now >= exp) {
		out_id[0] = '\0';
		return gn_err_set(err, GN_EAUTH, "device token has expired; authenticate again");
	}
	*out_gen = g;
	*out_verdict = memory_verdict(out_id, g);
	return 0;
}

int device_tokens_check_db(enum device_token_verdict *out_verdict, db_conn *c, const char *id, int64_t gen, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {id};
	int error = db_exec(&res, c, &st_device, p, err);
	if (error)
		return error;
	if (PQntuples(res) != 1)
		*out_verdict = DEVICE_TOKEN_DEAD; /* signed for a device that is no more */
	else
		*out_verdict = verdict_of(strtoll(PQgetvalue(res, 0, 0), NULL, 10),
					  strcmp(PQgetvalue(res, 0, 1), "t") == 0, gen);
	PQclear(res);
	return 0;
}

/* --- rotation ---------------------------------------------------------------------------------- */

/* The acknowledgements heard lately: each replica's listener answers every gn_device_tokens
 * notification with the same payload on gn_device_tokens_ack once it has applied it. */
#define ACKS 256
static struct ack {
	char id[37];
	int64_t gen;
	bool dead;
	int count;
} acks[ACKS];
static size_t ack_next;

void device_tokens_on_ack(const char *payload)
{
	char id[40], status[24];
	long long gen;
	if (strlen(payload) > 80 || sscanf(payload, "%39s %lld %23s", id, &gen, status) != 3 || !gn_is_uuid(id))
		return;
	bool dead = strcmp(status, "active") != 0;
	pthread_mutex_lock(&heard_lock);
	size_t i = 0;
	while (i < ACKS &&
	       !(acks[i].count && strcmp(acks[i].id, id) == 0 && acks[i].gen == gen && acks[i].dead == dead))
		i++;
	if (i == ACKS) {
		i = ack_next++ % ACKS;
		memcpy(acks[i].id, id, sizeof(acks[i].id)); /* a UUID: 36 characters and the NUL */
		acks[i].gen = (int64_t)gen;
		acks[i].dead = dead;
		acks[i].count = 0;
	}
	acks[i].count++;
	pthread_cond_broadcast(&heard);
	pthread_mutex_unlock(&heard_lock);
}

/* How many replicas acknowledged id at generation gen (any, when negative) and dead. */
static int acked(const char *id, int64_t gen, bool dead)
{
	int n = 0;
	for (size_t i = 0; i < ACKS; i++)
		if (acks[i].count && strcmp(acks[i].id, id) == 0 && (gen < 0 || acks[i].gen == gen) &&
		    acks[i].dead == dead)
			n = acks[i].count > n ? acks[i].count : n;
	return n;
}

void device_tokens_wait_heard(db_conn *c, const char *id, int64_t gen, bool dead)
{
	PGresult *res = NULL;
	gn_err err;
	int listeners = 1;
	const char *p[] = {NOTIFY_APPLICATION_NAME};
	if (db_exec(&res, c, &st_listeners, p, &err) == 0)
		listeners = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ROTATE_WAIT_MS / 1000;
	pthread_mutex_lock(&heard_lock);
	while (atomic_load(&listening) && acked(id, gen, dead) < listeners)
		if (pthread_cond_timedwait(&heard, &heard_lock, &until) != 0) {
			gn_log(GN_LOG_WARN, "event=device_tokens_unacknowledged device=%s acks=%d listeners=%d", id,
			       acked(id, gen, dead), listeners);
			break;
		}
	pthread_mutex_unlock(&heard_lock);
}

int device_tokens_rotate(json_t **out, db_conn *c, const struct gd_actor *who, const char *id, gn_err *err)
{
	PGresult *res = NULL;
	*out = NULL;
	if (!gn_is_uuid(id))
		return gn_err_set(err, GN_ENOTFOUND, "no such device");
	const char *p[] = {id};
	int error = audit_change(&res, c, who, &st_rotate, p, "no such active device", "device.token_rotate", "device",
				 id, NULL, err);
	if (error == GN_ENOTFOUND) {
		/* Say which: no such device, or one that is decommissioned (its tokens ended then). */
		PGresult *st = NULL;
		gn_err e2;
		if (db_exec(&st, c, &st_status, p, &e2) == 0 && PQntuples(st) == 1)
			error = gn_err_set(err, GN_ECONFLICT, "device %s is decommissioned; it has no tokens to rotate",
					   id);
		else
			error = gn_err_set(err, GN_ENOTFOUND, "no such device");
		PQclear(st);
		return error;
	}
	if (error)
		return error;
	int64_t gen = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	*out = json_pack("{s:s,s:I,s:I}", "device_id", id, "token_generation", (json_int_t)gen, "sessions_deleted",
			 (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10));
	PQclear(res);
	device_tokens_wait_heard(c, id, gen, false);
	return 0;
}
