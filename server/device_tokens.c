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
#include "json.h"
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

/* The first key: the one server_secrets held before migrations/0020 (which copies it), or a new
 * one. Replicas starting together: the first insert wins and every one reads the same key. */
static const db_stmt st_first_secret = {
	"device_tokens_first_secret",
	"INSERT INTO server_secrets (name, secret) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM device_token_keys)"
	" ON CONFLICT (name) DO NOTHING",
	2};
static const db_stmt st_first_key = {
	"device_tokens_first_key",
	"INSERT INTO device_token_keys (id, secret) SELECT 1, secret FROM server_secrets WHERE name = $1"
	" AND NOT EXISTS (SELECT 1 FROM device_token_keys) ON CONFLICT (id) DO NOTHING",
	1};
static const db_stmt st_keys = {"device_tokens_keys",
				"SELECT id, secret, coalesce(floor(extract(epoch FROM verify_until))::bigint, 0),"
				" retired_at IS NOT NULL FROM device_token_keys ORDER BY id",
				0};
static const db_stmt st_state = {"device_tokens_state",
				 "SELECT id::text, token_generation, status <> 'active' FROM devices"
				 " WHERE token_generation > 0 OR status <> 'active'",
				 0};
/* The device's row and whether the key ($2) still verifies at $3 (Unix seconds); a device or a
 * key that is not there reads as dead. */
static const db_stmt st_device = {
	"device_tokens_device",
	"SELECT (SELECT token_generation FROM devices WHERE id = $1), (SELECT status <> 'active' FROM devices WHERE id = $1),"
	" coalesce((SELECT retired_at IS NOT NULL OR coalesce(verify_until <= to_timestamp($3::bigint), false)"
	"  FROM device_token_keys WHERE id = $2::integer), true)",
	3};
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
/* Key rotation; the trigger of migrations/0020 tells every replica (gn_device_token_keys). */
static const db_stmt st_keys_retire = {
	"device_tokens_keys_retire",
	"UPDATE device_token_keys SET retired_at = now(), secret = NULL,"
	" superseded_at = coalesce(superseded_at, now()), verify_until = coalesce(verify_until, now())"
	" WHERE retired_at IS NULL RETURNING id",
	0};
/* The copy of key 1 that replicas of the release before key ids read: gone with key 1. */
static const db_stmt st_first_secret_drop = {"device_tokens_first_secret_drop",
					     "DELETE FROM server_secrets WHERE name = $1", 1};
static const db_stmt st_keys_supersede = {
	"device_tokens_keys_supersede",
	"UPDATE device_token_keys SET superseded_at = now(), verify_until = now() + make_interval(secs => $1::bigint)"
	" WHERE retired_at IS NULL AND superseded_at IS NULL RETURNING id",
	1};
static const db_stmt st_key_new = {
	"device_tokens_key_new",
	"INSERT INTO device_token_keys (id, secret) SELECT coalesce(max(id), 0) + 1, $1 FROM device_token_keys"
	" RETURNING id",
	1};
/* Keys past their verify_until verify nothing more: retired, secrets erased (key 1's copy too). */
static const db_stmt st_keys_expire = {
	"device_tokens_keys_expire",
	"WITH r AS (UPDATE device_token_keys SET retired_at = now(), secret = NULL"
	"  WHERE retired_at IS NULL AND verify_until <= now() RETURNING id),"
	" s AS (DELETE FROM server_secrets WHERE name = $1 AND EXISTS (SELECT 1 FROM r WHERE id = 1) RETURNING 1)"
	" SELECT string_agg(id::text, ',' ORDER BY id) FROM r",
	1};
static const db_stmt st_keys_list = {
	"device_tokens_keys_list",
	"SELECT coalesce(json_agg(json_build_object('id', id, 'state', CASE WHEN retired_at IS NOT NULL THEN 'retired'"
	"  WHEN verify_until IS NULL THEN 'signing' WHEN verify_until > now() THEN 'verifying' ELSE 'expired' END,"
	"  'created_at', gn_ts(created_at), 'superseded_at', gn_ts(superseded_at), 'verify_until', gn_ts(verify_until),"
	"  'retired_at', gn_ts(retired_at)) ORDER BY id DESC), '[]')::text FROM device_token_keys",
	0};

static _Atomic bool keys_wanted; /* a key was announced that is not loaded, or may have been */
static int keys_load(db_conn *c, gn_err *err);

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
	if (up)
		atomic_store(&keys_wanted, true); /* a key may have come or gone unheard */
	pthread_mutex_lock(&heard_lock);
	pthread_cond_broadcast(&heard);
	pthread_mutex_unlock(&heard_lock);
}

bool device_tokens_reload_wanted(void)
{
	return atomic_load(&reload_wanted) || atomic_load(&keys_wanted);
}

int device_tokens_reload(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	/* A full reload (after LISTEN) reads the keys itself before it trusts memory again, even when a
	 * minting thread took keys_wanted first: that thread's read may not be done, or may fail. */
	bool full = atomic_load(&reload_wanted);
	if ((atomic_exchange(&keys_wanted, false) || full) && keys_load(c, err)) {
		atomic_store(&keys_wanted, true);
		return err->code;
	}
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

/* --- the keys and the MAC ---------------------------------------------------------------------- */

/* What a replica knows of one key. Only ever learns more: a secret once, a verify_until that only
 * comes earlier, retired for good (the order of notifications and reloads does not matter). */
struct key {
	int id;
	int64_t verify_until; /* 0: none (it signs) */
	bool retired;
	EVP_MAC_CTX *tmpl; /* keyed; NULL while the secret is not loaded, and once retired */
};

static struct key *keys_;
static size_t nkeys, keys_cap;
static int newest_id; /* the newest key heard of, loaded or not */
static pthread_rwlock_t keys_lock = PTHREAD_RWLOCK_INITIALIZER;
static EVP_MAC *mac_;
static pthread_key_t mac_tls;
static pthread_once_t mac_tls_once = PTHREAD_ONCE_INIT;
static bool mac_tls_made;
/* Bumped whenever a key's secret is dropped: each thread then drops its copies. */
static _Atomic uint64_t keys_epoch = 1;

/* Each thread's keyed MAC contexts, copies of the keys' templates made once per thread and key. */
#define THREAD_MACS 4
struct thread_macs {
	uint64_t epoch;
	unsigned next;
	int id[THREAD_MACS];
	EVP_MAC_CTX *ctx[THREAD_MACS];
};

static void thread_macs_clear(struct thread_macs *t)
{
	for (size_t i = 0; i < THREAD_MACS; i++) {
		EVP_MAC_CTX_free(t->ctx[i]);
		t->ctx[i] = NULL;
		t->id[i] = 0;
	}
}

static void mac_tls_free(void *p)
{
	if (p)
		thread_macs_clear(p);
	free(p);
}

static void mac_tls_create(void)
{
	mac_tls_made = pthread_key_create(&mac_tls, mac_tls_free) == 0;
}

/* The key numbered id (under keys_lock), or NULL. */
static struct key *key_find(int id)
{
	for (size_t i = 0; i < nkeys; i++)
		if (keys_[i].id == id)
			return &keys_[i];
	return NULL;
}

/* This thread's MAC context for key id, or NULL when its secret is not loaded (or retired). */
static EVP_MAC_CTX *thread_mac(int id)
{
	if (!mac_tls_made)
		return NULL;
	struct thread_macs *t = pthread_getspecific(mac_tls);
	if (!t) {
		t = gn_calloc(1, sizeof(*t));
		if (pthread_setspecific(mac_tls, t) != 0) {
			free(t);
			return NULL;
		}
	}
	uint64_t epoch = atomic_load(&keys_epoch);
	if (t->epoch != epoch) {
		thread_macs_clear(t);
		t->epoch = epoch;
	}
	for (size_t i = 0; i < THREAD_MACS; i++)
		if (t->ctx[i] && t->id[i] == id)
			return t->ctx[i];
	pthread_rwlock_rdlock(&keys_lock);
	struct key *k = key_find(id);
	EVP_MAC_CTX *ctx = k && k->tmpl && !k->retired ? EVP_MAC_CTX_dup(k->tmpl) : NULL;
	pthread_rwlock_unlock(&keys_lock);
	if (!ctx)
		return NULL;
	size_t slot = t->next++ % THREAD_MACS;
	EVP_MAC_CTX_free(t->ctx[slot]);
	t->ctx[slot] = ctx;
	t->id[slot] = id;
	return ctx;
}

/* HMAC-SHA256 of msg under key id; false when the key is not loaded or OpenSSL fails. */
static bool token_mac(unsigned char out[32], int id, const char *msg, size_t len)
{
	EVP_MAC_CTX *ctx = thread_mac(id);
	size_t outl = 0;
	/* A NULL key re-initialises with the key the template was given. */
	return ctx && EVP_MAC_init(ctx, NULL, 0, NULL) == 1 &&
	       EVP_MAC_update(ctx, (const unsigned char *)msg, len) == 1 && EVP_MAC_final(ctx, out, &outl, 32) == 1 &&
	       outl == 32;
}

/* A keyed HMAC-SHA256 template for secret, or NULL when OpenSSL fails. */
static EVP_MAC_CTX *template_new(const unsigned char secret[KEY_LEN])
{
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
			       OSSL_PARAM_construct_end()};
	EVP_MAC_CTX *ctx = mac_ ? EVP_MAC_CTX_new(mac_) : NULL;
	if (ctx && EVP_MAC_init(ctx, secret, KEY_LEN, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

/* Adds what is known of key id: its secret (may be NULL), verify_until (0: none), retired. */
static int key_merge(int id, const unsigned char *secret, int64_t verify_until, bool retired, gn_err *err)
{
	int error = 0;
	pthread_rwlock_wrlock(&keys_lock);
	struct key *k = key_find(id);
	if (!k) {
		if (nkeys == keys_cap) {
			keys_cap = keys_cap ? 2 * keys_cap : 8;
			keys_ = gn_realloc(keys_, keys_cap * sizeof(*keys_));
		}
		k = &keys_[nkeys++];
		memset(k, 0, sizeof(*k));
		k->id = id;
	}
	if (id > newest_id)
		newest_id = id;
	if (verify_until > 0 && (k->verify_until == 0 || verify_until < k->verify_until))
		k->verify_until = verify_until;
	if (retired && !k->retired) {
		k->retired = true;
		EVP_MAC_CTX_free(k->tmpl);
		k->tmpl = NULL;
		atomic_fetch_add(&keys_epoch, 1);
	}
	if (secret && !k->retired && !k->tmpl && !(k->tmpl = template_new(secret)))
		error = gn_err_set(err, GN_ERROR, "OpenSSL cannot set up HMAC-SHA256 for device tokens");
	pthread_rwlock_unlock(&keys_lock);
	return error;
}

/* The newest key that can sign (0 for none), and whether a newer one was announced. A superseded
 * key (one with a verify_until) signs nothing: its tokens would be refused before they expire. */
static int signing_key(bool *out_newer)
{
	int id = 0;
	pthread_rwlock_rdlock(&keys_lock);
	for (size_t i = 0; i < nkeys; i++)
		if (keys_[i].tmpl && !keys_[i].retired && !keys_[i].verify_until && keys_[i].id > id)
			id = keys_[i].id;
	*out_newer = newest_id > id;
	pthread_rwlock_unlock(&keys_lock);
	return id;
}

/* Reads every key from the database. */
static int keys_load(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	unsigned char secret[KEY_LEN];
	int error = db_exec(&res, c, &st_keys, NULL, err);
	for (int i = 0; !error && i < PQntuples(res); i++) {
		const char *hex = db_val(res, i, 1);
		if (hex && gn_hex_decode(secret, sizeof(secret), hex)) {
			error = gn_err_set(err, GN_ERROR, "device token key %s in device_token_keys is corrupt",
					   PQgetvalue(res, i, 0));
			break;
		}
		error = key_merge(atoi(PQgetvalue(res, i, 0)), hex ? secret : NULL,
				  strtoll(PQgetvalue(res, i, 2), NULL, 10), strcmp(PQgetvalue(res, i, 3), "t") == 0,
				  err);
	}
	memset(secret, 0, sizeof(secret));
	PQclear(res);
	return error;
}

int device_tokens_use_key(int id, const unsigned char key[32], gn_err *err)
{
	pthread_once(&mac_tls_once, mac_tls_create);
	if (!mac_tls_made)
		return gn_err_set(err, GN_ERROR, "cannot create the thread key of the device token MAC");
	if (!mac_ && !(mac_ = EVP_MAC_fetch(NULL, "HMAC", NULL)))
		return gn_err_set(err, GN_ERROR, "OpenSSL cannot set up HMAC-SHA256 for device tokens");
	if (id <= 0)
		return gn_err_set(err, GN_EINVAL, "device token key ids start at 1");
	return key_merge(id, key, 0, false, err);
}

int device_tokens_init(db_conn *c, gn_err *err)
{
	unsigned char raw[KEY_LEN];
	char hex[2 * KEY_LEN + 1];
	bool newer;
	int error;
	pthread_once(&mac_tls_once, mac_tls_create);
	if (!mac_tls_made)
		return gn_err_set(err, GN_ERROR, "cannot create the thread key of the device token MAC");
	if (!mac_ && !(mac_ = EVP_MAC_fetch(NULL, "HMAC", NULL)))
		return gn_err_set(err, GN_ERROR, "OpenSSL cannot set up HMAC-SHA256 for device tokens");
	if ((error = gn_random_bytes(raw, sizeof(raw), err)))
		return error;
	gn_hex_encode(hex, raw, sizeof(raw));
	memset(raw, 0, sizeof(raw));
	const char *pp[] = {KEY_NAME, hex};
	const char *pk[] = {KEY_NAME};
	error = db_exec(NULL, c, &st_first_secret, pp, err);
	memset(hex, 0, sizeof(hex));
	if (error || (error = db_exec(NULL, c, &st_first_key, pk, err)) || (error = keys_load(c, err)))
		return error;
	if (!signing_key(&newer))
		return gn_err_set(err, GN_ERROR, "device_token_keys holds no key that can sign device tokens");
	return 0;
}

void device_tokens_cleanup(void)
{
	atomic_store(&trusted, false);
	atomic_store(&keys_wanted, false);
	if (mac_tls_made) {
		struct thread_macs *t = pthread_getspecific(mac_tls);
		mac_tls_free(t);
		pthread_setspecific(mac_tls, NULL);
	}
	pthread_rwlock_wrlock(&keys_lock);
	for (size_t i = 0; i < nkeys; i++)
		EVP_MAC_CTX_free(keys_[i].tmpl);
	free(keys_);
	keys_ = NULL;
	nkeys = keys_cap = 0;
	newest_id = 0;
	atomic_fetch_add(&keys_epoch, 1);
	pthread_rwlock_unlock(&keys_lock);
	EVP_MAC_free(mac_);
	mac_ = NULL;
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

/* Token: "gnd_v3.KEY.ID.GEN.EXP.MAC" ("gnd_v2.ID.GEN.EXP.MAC" while key 1 signs), MAC the hex of
 * the first MAC_LEN bytes of the HMAC-SHA256 of everything before its dot. */
int device_tokens_mint(char **out, db_conn *c, const char *device_id, int64_t gen, int64_t exp, gn_err *err)
{
	unsigned char mac[32];
	char hex[MAC_HEX + 1];
	bool newer;
	gn_err e2;
	*out = NULL;
	/* A new key was announced (gn_device_token_keys): sign with it from the first token on. */
	/* While the listener is not trusted (down, or just back), a rotation may have gone unheard:
	 * read the keys before signing rather than sign with a superseded one. */
	if (c) {
		bool wanted = atomic_exchange(&keys_wanted, false) || !atomic_load(&trusted);
		signing_key(&newer);
		if ((wanted || newer) && keys_load(c, &e2)) {
			atomic_store(&keys_wanted, true);
			gn_log(GN_LOG_WARN,
			       "event=device_token_keys_load_failed msg=\"%s\" note=\"signs with the key it has\"",
			       e2.msg);
		}
	}
	int id = signing_key(&newer);
	if (!id)
		return gn_err_set(err, GN_EUNAVAIL, "no device token key can sign; try again shortly");
	char *body = id == DEVICE_TOKEN_FIRST_KEY ? gn_asprintf(DEVICE_TOKEN_PREFIX_V2 "%s.%lld.%lld", device_id,
								(long long)gen, (long long)exp)
						  : gn_asprintf(DEVICE_TOKEN_PREFIX "%d.%s.%lld.%lld", id, device_id,
								(long long)gen, (long long)exp);
	if (!token_mac(mac, id, body, strlen(body))) {
		free(body);
		return gn_err_set(err, GN_ERROR, "cannot sign the device token");
	}
	gn_hex_encode(hex, mac, MAC_LEN);
	*out = gn_asprintf("%s.%s", body, hex);
	free(body);
	return 0;
}

bool device_tokens_is_signed(const char *token)
{
	return strncmp(token, DEVICE_TOKEN_PREFIX, strlen(DEVICE_TOKEN_PREFIX)) == 0 ||
	       strncmp(token, DEVICE_TOKEN_PREFIX_V2, strlen(DEVICE_TOKEN_PREFIX_V2)) == 0;
}

/* Parses a decimal field of 1 to max digits ending at `end`; false otherwise. */
static bool parse_num(int64_t *out, const char *p, const char *end, int max)
{
	int64_t v = 0;
	if (end <= p || end - p > max)
		return false;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	*out = v;
	return true;
}

/* Splits a signed token into *out (its key id, device id, generation, expiry), the length of what
 * its MAC covers and the MAC; false when it is malformed. */
static bool token_parse(struct device_token *out, size_t *out_signed, unsigned char mac[MAC_LEN], const char *token)
{
	int64_t kid = DEVICE_TOKEN_FIRST_KEY;
	size_t len = strlen(token);
	const char *p = token + strlen(DEVICE_TOKEN_PREFIX); /* both prefixes have the same length */
	/* [KEY '.'] ID (36) '.' GEN '.' EXP '.' MAC (32) */
	if (len < strlen(DEVICE_TOKEN_PREFIX) + 36 + 1 + 1 + 1 + 1 + 1 + MAC_HEX)
		return false;
	const char *m = token + len - MAC_HEX;
	if (strncmp(token, DEVICE_TOKEN_PREFIX, strlen(DEVICE_TOKEN_PREFIX)) == 0) {
		const char *dot = memchr(p, '.', (size_t)(m - p));
		/* No leading zero: one token has one spelling. */
		if (!dot || *p == '0' || !parse_num(&kid, p, dot, 9) || kid < 1)
			return false;
		p = dot + 1;
	} else if (strncmp(token, DEVICE_TOKEN_PREFIX_V2, strlen(DEVICE_TOKEN_PREFIX_V2)) != 0) {
		return false;
	}
	if (m - p < 36 + 1 + 1 + 1 + 1 + 1 + 1)
		return false;
	const char *gen = p + 37;
	const char *dot_exp = memchr(gen, '.', (size_t)(m - gen));
	/* Lower-case hex only, as minted: one token has one spelling. */
	if (p[36] != '.' || m[-1] != '.' || !dot_exp || !parse_num(&out->gen, gen, dot_exp, 18) ||
	    !parse_num(&out->exp, dot_exp + 1, m - 1, 18) || strspn(m, "0123456789abcdef") != MAC_HEX ||
	    gn_hex_decode(mac, MAC_LEN, m))
		return false;
	memcpy(out->device_id, p, 36);
	out->device_id[36] = '\0';
	out->key_id = (int)kid;
	*out_signed = (size_t)(m - 1 - token);
	/* Lower case only, as PostgreSQL writes a uuid (and so every NOTIFY that revokes one): a token
	 * naming its device in upper case would escape the in-memory revocation table. */
	return gn_is_uuid(out->device_id) && !strpbrk(out->device_id, "ABCDEF");
}

/* What memory knows of key id at now: DEVICE_TOKEN_OK (its secret is loaded), _KEY_RETIRED or _NO_KEY. */
static enum device_token_verdict key_verdict(int id, int64_t now)
{
	enum device_token_verdict v = DEVICE_TOKEN_NO_KEY;
	pthread_rwlock_rdlock(&keys_lock);
	const struct key *k = key_find(id);
	if (k && (k->retired || (k->verify_until && now >= k->verify_until)))
		v = DEVICE_TOKEN_KEY_RETIRED;
	else if (k && k->tmpl)
		v = DEVICE_TOKEN_OK;
	pthread_rwlock_unlock(&keys_lock);
	return v;
}

int device_tokens_check(enum device_token_verdict *out_verdict, struct device_token *out, const char *token,
			int64_t now, gn_err *err)
{
	unsigned char want[32], got[MAC_LEN];
	struct device_token t;
	size_t signed_len;
	*out_verdict = DEVICE_TOKEN_UNKNOWN;
	memset(out, 0, sizeof(*out));
	if (!token_parse(&t, &signed_len, got, token))
		return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	enum device_token_verdict kv = key_verdict(t.key_id, now);
	if (kv == DEVICE_TOKEN_KEY_RETIRED)
		return gn_err_set(err, GN_EAUTH, "device token was signed with a retired key; authenticate again");
	if (kv == DEVICE_TOKEN_NO_KEY) {
		*out_verdict = kv;
		return 0;
	}
	if (!token_mac(want, t.key_id, token, signed_len) || !gn_consttime_eq(want, got, MAC_LEN))
		return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	if (now >= t.exp)
		return gn_err_set(err, GN_EAUTH, "device token has expired; authenticate again");
	*out = t;
	*out_verdict = memory_verdict(t.device_id, t.gen);
	return 0;
}

int device_tokens_check_db(enum device_token_verdict *out_verdict, struct device_token *out, db_conn *c,
			   const char *token, int64_t now, gn_err *err)
{
	PGresult *res = NULL;
	char kid[16], snow[24];
	int error = device_tokens_check(out_verdict, out, token, now, err);
	if (!error && *out_verdict == DEVICE_TOKEN_NO_KEY) {
		/* A key announced after this replica last read them, or none at all. */
		if ((error = keys_load(c, err)) || (error = device_tokens_check(out_verdict, out, token, now, err)))
			return error;
		if (*out_verdict == DEVICE_TOKEN_NO_KEY)
			return gn_err_set(err, GN_EAUTH, "unknown or malformed device token");
	}
	if (error || *out_verdict != DEVICE_TOKEN_UNKNOWN)
		return error;
	snprintf(kid, sizeof(kid), "%d", out->key_id);
	snprintf(snow, sizeof(snow), "%lld", (long long)now);
	const char *p[] = {out->device_id, kid, snow};
	if ((error = db_exec(&res, c, &st_device, p, err)))
		return error;
	if (strcmp(PQgetvalue(res, 0, 2), "t") == 0)
		*out_verdict = DEVICE_TOKEN_KEY_RETIRED; /* a retirement this replica has not heard of */
	else if (PQgetisnull(res, 0, 0))
		*out_verdict = DEVICE_TOKEN_DEAD; /* signed for a device that is no more */
	else
		*out_verdict = verdict_of(strtoll(PQgetvalue(res, 0, 0), NULL, 10),
					  strcmp(PQgetvalue(res, 0, 1), "t") == 0, out->gen);
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

/* Waits, at most ROTATE_WAIT_MS, until count(what) (read under heard_lock) reaches the number of
 * replicas listening now, or this one stops listening; false when the wait timed out. Either way
 * *out_acks and *out_listeners are the last count and that number. */
static bool wait_acks(int *out_acks, int *out_listeners, db_conn *c, int (*count)(const void *), const void *what)
{
	PGresult *res = NULL;
	gn_err err;
	int listeners = 1;
	bool ok = true;
	const char *p[] = {NOTIFY_APPLICATION_NAME};
	if (db_exec(&res, c, &st_listeners, p, &err) == 0)
		listeners = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ROTATE_WAIT_MS / 1000;
	pthread_mutex_lock(&heard_lock);
	while (atomic_load(&listening) && count(what) < listeners)
		if (pthread_cond_timedwait(&heard, &heard_lock, &until) != 0) {
			ok = false;
			break;
		}
	*out_acks = count(what);
	pthread_mutex_unlock(&heard_lock);
	*out_listeners = listeners;
	return ok;
}

/* What device_tokens_wait_heard waits for: acknowledgements of one device's change. */
struct device_change {
	const char *id;
	int64_t gen;
	bool dead;
};

static int device_change_acks(const void *what)
{
	const struct device_change *d = what;
	return acked(d->id, d->gen, d->dead);
}

void device_tokens_wait_heard(db_conn *c, const char *id, int64_t gen, bool dead)
{
	const struct device_change d = {id, gen, dead};
	int got, listeners;
	if (!wait_acks(&got, &listeners, c, device_change_acks, &d))
		gn_log(GN_LOG_WARN, "event=device_tokens_unacknowledged device=%s acks=%d listeners=%d", id, got,
		       listeners);
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

/* --- key rotation ------------------------------------------------------------------------------ */

void device_tokens_on_key_notify(const char *payload)
{
	char state[16];
	int id;
	long long until;
	if (strlen(payload) > 64 || sscanf(payload, "%d %15s %lld", &id, state, &until) != 3 || id <= 0 || until < 0) {
		gn_log(GN_LOG_WARN, "event=device_token_keys_bad_notify len=%zu", strlen(payload));
		atomic_store(&keys_wanted, true);
		return;
	}
	gn_err err;
	bool retired = strcmp(state, "retired") == 0;
	if (key_merge(id, NULL, (int64_t)until, retired, &err) == 0 && strcmp(state, "signing") == 0)
		atomic_store(&keys_wanted, true); /* its secret is read from the table, never sent */
	gn_log(GN_LOG_INFO, "event=device_token_key key=%d state=%s", id, state);
}

/* The acknowledgements of key notifications heard lately, by payload. */
#define KEY_ACKS 32
static struct key_ack {
	char payload[64];
	int count;
} key_acks[KEY_ACKS];
static size_t key_ack_next;

void device_tokens_on_key_ack(const char *payload)
{
	if (strlen(payload) >= sizeof(key_acks[0].payload))
		return;
	pthread_mutex_lock(&heard_lock);
	size_t i = 0;
	while (i < KEY_ACKS && !(key_acks[i].count && strcmp(key_acks[i].payload, payload) == 0))
		i++;
	if (i == KEY_ACKS) {
		i = key_ack_next++ % KEY_ACKS;
		snprintf(key_acks[i].payload, sizeof(key_acks[i].payload), "%s", payload);
		key_acks[i].count = 0;
	}
	key_acks[i].count++;
	pthread_cond_broadcast(&heard);
	pthread_mutex_unlock(&heard_lock);
}

static int key_acked(const char *payload)
{
	for (size_t i = 0; i < KEY_ACKS; i++)
		if (key_acks[i].count && strcmp(key_acks[i].payload, payload) == 0)
			return key_acks[i].count;
	return 0;
}

static int key_change_acks(const void *payload)
{
	return key_acked(payload);
}

/* Waits, at most ROTATE_WAIT_MS, until every replica listening now has acknowledged payload. */
static void wait_key_heard(db_conn *c, const char *payload)
{
	int got, listeners;
	if (!wait_acks(&got, &listeners, c, key_change_acks, payload))
		gn_log(GN_LOG_WARN, "event=device_token_keys_unacknowledged payload=\"%s\" acks=%d listeners=%d",
		       payload, got, listeners);
}

/* The ids of res's first column as a JSON array (new). */
static json_t *ids_of(const PGresult *res)
{
	json_t *a = json_array();
	for (int i = 0; i < PQntuples(res); i++)
		json_array_append_new(a, json_integer(atoi(PQgetvalue(res, i, 0))));
	return a;
}

int device_tokens_rotate_key(json_t **out, db_conn *c, const struct gd_actor *who, bool retire_previous,
			     int64_t overlap, gn_err *err)
{
	PGresult *old = NULL, *res = NULL;
	unsigned char raw[KEY_LEN];
	char hex[2 * KEY_LEN + 1], sover[24], payload[64], sid[16];
	json_t *keys = NULL, *detail = NULL;
	int error, id = 0;
	*out = NULL;
	if (overlap < 0)
		return gn_err_set(err, GN_EINVAL, "the overlap of a key rotation cannot be negative");
	if ((error = gn_random_bytes(raw, sizeof(raw), err)))
		return error;
	gn_hex_encode(hex, raw, sizeof(raw));
	memset(raw, 0, sizeof(raw));
	snprintf(sover, sizeof(sover), "%lld", (long long)overlap);
	const char *pover[] = {sover}, *pname[] = {KEY_NAME}, *phex[] = {hex};
	if ((error = db_tx_begin(c, err)))
		goto out;
	if ((error = db_lock_xact(c, DB_LOCK_DEVICE_TOKEN_KEYS, err)))
		goto fail;
	if (!retire_previous)
		error = db_exec(&old, c, &st_keys_supersede, pover, err);
	else if (!(error = db_exec(&old, c, &st_keys_retire, NULL, err)))
		error = db_exec(NULL, c, &st_first_secret_drop, pname, err);
	if (error || (error = db_exec(&res, c, &st_key_new, phex, err)))
		goto fail;
	id = atoi(PQgetvalue(res, 0, 0));
	snprintf(sid, sizeof(sid), "%d", id);
	detail = json_pack("{s:b,s:o}", "retire_previous", retire_previous, retire_previous ? "retired" : "verifying",
			   ids_of(old));
	if (!retire_previous)
		json_object_set_new(detail, "overlap_s", json_integer(overlap));
	if ((error = audit_write(c, who, "device_token_key.rotate", "device_token_key", sid, detail, err)) ||
	    (error = db_tx_commit(c, err)))
		goto fail;
	gn_log(GN_LOG_INFO, "event=device_token_key_rotated key=%d retired_previous=%s", id,
	       retire_previous ? "true" : "false");
	/* The new key's notification comes last from the commit: once heard, so were the others. */
	snprintf(payload, sizeof(payload), "%d signing 0", id);
	wait_key_heard(c, payload);
	if ((error = device_tokens_keys(&keys, c, err)))
		goto out;
	*out = json_pack("{s:i,s:o}", "key_id", id, "keys", keys);
	goto out;
fail:
	db_tx_rollback(c);
out:
	memset(hex, 0, sizeof(hex));
	PQclear(old);
	PQclear(res);
	return error;
}

int device_tokens_keys(json_t **out, db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	gn_err e2;
	*out = NULL;
	int error = db_exec(&res, c, &st_keys_list, NULL, err);
	if (error)
		return error;
	if (gn_json_parse(out, PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0), 8, &e2))
		error = gn_err_set(err, GN_ERROR, "cannot read the device token keys: %s", e2.msg);
	PQclear(res);
	return error;
}

int device_tokens_gc(db_conn *c, gn_err *err)
{
	PGresult *res = NULL;
	const char *p[] = {KEY_NAME};
	int error = db_exec(&res, c, &st_keys_expire, p, err);
	if (!error && db_val(res, 0, 0))
		gn_log(GN_LOG_INFO,
		       "event=device_token_keys_expired keys=%s note=\"past verify_until; secrets erased\"",
		       db_val(res, 0, 0));
	PQclear(res);
	return error;
}
