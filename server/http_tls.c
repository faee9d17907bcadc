/* HTTPS for gangliond over libmicrohttpd's GnuTLS.
 *
 * The certificate reaches GnuTLS through a retrieve callback (MHD_OPTION_HTTPS_CERT_CALLBACK)
 * rather than MHD_OPTION_HTTPS_MEM_CERT/KEY, which libmicrohttpd 0.9.75 reads once when the daemon
 * starts. The callback hands each new handshake the current credential set; SIGHUP loads a new
 * set and swaps a pointer, so the listener, the thread pool and the connections open stay as they
 * are. A replaced set is kept until exit: GnuTLS uses what the callback returned for the whole
 * handshake, with no call to say when it is done with it (a few KiB per reload). */
#include "http_tls.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "config.h"
#include "fileio.h"
#include "log.h"

#define MAX_PEM_FILE (1024 * 1024)
#define MAX_CHAIN 16

/* One certificate chain and its key, as the retrieve callback hands them to GnuTLS. */
struct cred {
	gnutls_pcert_st certs[MAX_CHAIN];
	unsigned ncerts;
	gnutls_privkey_t key;
	struct cred *older; /* the sets this one replaced, newest first */
};

static _Atomic(struct cred *) current;
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static char *client_ca_pem; /* tls-client-ca-file's contents, or NULL */
static char *priorities;    /* the cipher policy in force */
static char *client_ca_path;

static void cred_free(struct cred *c)
{
	for (unsigned i = 0; i < c->ncerts; i++)
		gnutls_pcert_deinit(&c->certs[i]);
	if (c->key)
		gnutls_privkey_deinit(c->key);
	free(c);
}

/* What the log says of the first certificate of c: SHA-256 fingerprint, serial and expiry. */
struct cert_info {
	char sha256[65], serial[81], not_after[32];
	time_t expires; /* or -1 */
};

static void describe(const struct cred *c, struct cert_info *ci)
{
	gnutls_x509_crt_t crt;
	unsigned char fp[32], serial[40];
	size_t fplen = sizeof(fp), slen = sizeof(serial);
	memset(ci, 0, sizeof(*ci));
	ci->expires = -1;
	snprintf(ci->not_after, sizeof(ci->not_after), "?");
	if (gnutls_x509_crt_init(&crt) < 0)
		return;
	if (gnutls_x509_crt_import(crt, &c->certs[0].cert, GNUTLS_X509_FMT_DER) == 0) {
		if (gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fplen) == 0)
			for (size_t i = 0; i < fplen && i < sizeof(fp); i++)
				snprintf(ci->sha256 + 2 * i, 3, "%02x", fp[i]);
		if (gnutls_x509_crt_get_serial(crt, serial, &slen) == 0)
			for (size_t i = 0; i < slen && i < sizeof(serial); i++)
				snprintf(ci->serial + 2 * i, 3, "%02x", serial[i]);
		ci->expires = gnutls_x509_crt_get_expiration_time(crt);
		if (ci->expires != (time_t)-1) {
			struct tm tm;
			gmtime_r(&ci->expires, &tm);
			strftime(ci->not_after, sizeof(ci->not_after), "%Y-%m-%dT%H:%M:%SZ", &tm);
		}
	}
	gnutls_x509_crt_deinit(crt);
}

/* Logs the certificate now served (event: loaded or reloaded), and warns when it has expired. */
static void log_cert(const struct cred *c, const char *event, const char *path)
{
	struct cert_info ci;
	describe(c, &ci);
	gn_log(GN_LOG_INFO, "event=%s file=%s sha256=%s serial=%s not_after=%s chain=%u client_ca=%s", event, path,
	       ci.sha256, ci.serial, ci.not_after, c->ncerts, client_ca_path ? client_ca_path : "-");
	if (ci.expires != (time_t)-1 && ci.expires < time(NULL))
		gn_log(GN_LOG_WARN, "event=tls_certificate_expired file=%s not_after=%s msg=\"clients will refuse it\"",
		       path, ci.not_after);
}

/* Whether key is the private half of the first certificate's public key. */
static bool key_matches(const struct cred *c)
{
	gnutls_pubkey_t pub;
	unsigned char a[64], b[64];
	size_t alen = sizeof(a), blen = sizeof(b);
	bool same = false;
	if (gnutls_pubkey_init(&pub) < 0)
		return false;
	if (gnutls_pubkey_import_privkey(pub, c->key, 0, 0) == 0 &&
	    gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &alen) == 0 &&
	    gnutls_pubkey_get_key_id(c->certs[0].pubkey, GNUTLS_KEYID_USE_SHA256, b, &blen) == 0)
		same = alen == blen && memcmp(a, b, alen) == 0;
	gnutls_pubkey_deinit(pub);
	return same;
}

/* Loads a certificate chain (PEM, the server's certificate first) and its private key (PEM,
 * unencrypted) into a new set. */
static int cred_load(struct cred **out, const char *cert_path, const char *key_path, gn_err *err)
{
	char *pem = NULL;
	size_t len = 0;
	int rc, error = 0;
	struct cred *c = gn_calloc(1, sizeof(*c));
	*out = NULL;
	if ((error = gn_file_read(&pem, &len, cert_path, MAX_PEM_FILE, err))) {
		gn_err_set(err, error, "tls-cert-file %s: %s", cert_path, err->msg);
		goto out;
	}
	gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
	c->ncerts = MAX_CHAIN;
	if ((rc = gnutls_pcert_list_import_x509_raw(c->certs, &c->ncerts, &d, GNUTLS_X509_FMT_PEM,
						    GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED)) < 0 ||
	    c->ncerts == 0) {
		c->ncerts = 0;
		error = gn_err_set(err, GN_EINVAL,
				   "tls-cert-file %s: not a PEM certificate chain with the server's certificate first "
				   "(at most %d certificates): %s",
				   cert_path, MAX_CHAIN, rc < 0 ? gnutls_strerror(rc) : "no certificate");
		goto out;
	}
	free(pem);
	pem = NULL;
	if ((error = gn_file_read(&pem, &len, key_path, MAX_PEM_FILE, err))) {
		gn_err_set(err, error, "tls-key-file %s: %s", key_path, err->msg);
		goto out;
	}
	d = (gnutls_datum_t){(unsigned char *)pem, (unsigned)len};
	if ((rc = gnutls_privkey_init(&c->key)) < 0 ||
	    (rc = gnutls_privkey_import_x509_raw(c->key, &d, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
		error = gn_err_set(err, GN_EINVAL, "tls-key-file %s: not a PEM private key without a passphrase: %s",
				   key_path, gnutls_strerror(rc));
		goto out;
	}
	if (!key_matches(c))
		error = gn_err_set(err, GN_EINVAL,
				   "tls-key-file %s is not the key of the certificate in tls-cert-file %s", key_path,
				   cert_path);
out:
	if (pem) {
		gnutls_memset(pem, 0, len);
		free(pem);
	}
	if (error) {
		cred_free(c);
		return error;
	}
	*out = c;
	return 0;
}

/* GnuTLS asks for the server's certificate at each handshake. */
static int retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
		    const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
		    unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
	(void)session, (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
	struct cred *c = atomic_load_explicit(&current, memory_order_acquire);
	if (!c)
		return -1;
	*pcert = c->certs;
	*pcert_length = c->ncerts;
	*pkey = c->key;
	return 0;
}

static bool set(const char *s)
{
	return s && *s;
}

/* The GnuTLS priority string c asks for. */
static const char *policy(const struct gd_config *c)
{
	return set(c->tls_priorities) ? c->tls_priorities : GD_TLS_PRIORITIES_DEFAULT;
}

int http_tls_check_config(const struct gd_config *c, gn_err *err)
{
	bool cert = set(c->tls_cert_file), key = set(c->tls_key_file);
	if (cert != key)
		return gn_err_set(err, GN_EINVAL, "tls-cert-file and tls-key-file go together: set both, or neither");
	if (set(c->tls_client_ca_file) && !cert)
		return gn_err_set(err, GN_EINVAL,
				  "tls-client-ca-file needs HTTPS: set tls-cert-file and tls-key-file as well");
	if (c->tls_required && !cert)
		return gn_err_set(err, GN_EINVAL,
				  "tls-required is true but tls-cert-file and tls-key-file are not set: gangliond "
				  "would serve plain HTTP");
	gnutls_priority_t p;
	const char *bad = NULL, *want = policy(c);
	int rc = gnutls_priority_init(&p, want, &bad);
	if (rc < 0)
		return gn_err_set(err, GN_EINVAL, "tls-priorities: %s at '%.40s'", gnutls_strerror(rc),
				  bad ? bad : want);
	gnutls_priority_deinit(p);
	return 0;
}

int http_tls_init(const struct gd_config *c, gn_err *err)
{
	struct cred *cr;
	size_t len;
	int error;
	if (!set(c->tls_cert_file))
		return 0;
	if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES ||
	    MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK) != MHD_YES)
		return gn_err_set(err, GN_ERROR,
				  "tls-cert-file is set but this libmicrohttpd was built without TLS (GnuTLS)");
	if ((error = cred_load(&cr, c->tls_cert_file, c->tls_key_file, err)))
		return error;
	if (set(c->tls_client_ca_file)) {
		if ((error = gn_file_read(&client_ca_pem, &len, c->tls_client_ca_file, MAX_PEM_FILE, err))) {
			cred_free(cr);
			return gn_err_set(err, error, "tls-client-ca-file %s: %s", c->tls_client_ca_file, err->msg);
		}
		gnutls_x509_crt_t *list = NULL;
		unsigned n = 0;
		gnutls_datum_t d = {(unsigned char *)client_ca_pem, (unsigned)len};
		int rc = gnutls_x509_crt_list_import2(&list, &n, &d, GNUTLS_X509_FMT_PEM, 0);
		for (unsigned i = 0; rc >= 0 && i < n; i++)
			gnutls_x509_crt_deinit(list[i]);
		gnutls_free(list);
		if (rc < 0 || n == 0) {
			cred_free(cr);
			free(client_ca_pem);
			client_ca_pem = NULL;
			return gn_err_set(err, GN_EINVAL, "tls-client-ca-file %s: no PEM certificate in it%s%s",
					  c->tls_client_ca_file, rc < 0 ? ": " : "", rc < 0 ? gnutls_strerror(rc) : "");
		}
		client_ca_path = gn_strdup(c->tls_client_ca_file);
	}
	priorities = gn_strdup(policy(c));
	atomic_store_explicit(&current, cr, memory_order_release);
	log_cert(cr, "tls_certificate_loaded", c->tls_cert_file);
	gn_log(GN_LOG_INFO, "event=tls_policy priorities=\"%s\"", priorities);
	return 0;
}

bool http_tls_enabled(void)
{
	return atomic_load_explicit(&current, memory_order_acquire) != NULL;
}

void http_tls_mhd_options(struct MHD_OptionItem *items)
{
	size_t n = 0;
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)&retrieve};
	items[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, priorities};
	if (client_ca_pem) /* libmicrohttpd then asks every client for a certificate (optional in TLS) */
		items[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, client_ca_pem};
	items[n] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
}

int http_tls_reload(const struct gd_config *fresh, gn_err *err)
{
	struct cred *cr;
	bool want = set(fresh->tls_cert_file);
	if (!want && !http_tls_enabled())
		return 0;
	if (want != http_tls_enabled())
		return gn_err_set(err, GN_EINVAL, "turning HTTPS %s needs a restart (tls-cert-file %s)",
				  want ? "on" : "off", want ? "was empty at start" : "is now empty");
	/* A changed tls-client-ca-file or tls-priorities is named by config_reload_from's warning about
	 * the keys that apply only at a restart; the running ones stay. */
	int error = cred_load(&cr, fresh->tls_cert_file, fresh->tls_key_file, err);
	if (error)
		return error;
	pthread_mutex_lock(&reload_lock);
	cr->older = atomic_load_explicit(&current, memory_order_acquire);
	atomic_store_explicit(&current, cr, memory_order_release);
	pthread_mutex_unlock(&reload_lock);
	log_cert(cr, "tls_certificate_reloaded", fresh->tls_cert_file);
	return 0;
}

bool http_tls_client_required(void)
{
	return client_ca_pem != NULL;
}

int http_tls_client_check(struct MHD_Connection *conn, gn_err *err)
{
	if (!client_ca_pem)
		return 0;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	gnutls_session_t s = ci ? (gnutls_session_t)ci->tls_session : NULL;
	unsigned n = 0, status = 0;
	if (!s)
		return gn_err_set(err, GN_EFORBIDDEN, "a client certificate is required, over HTTPS");
	if (!gnutls_certificate_get_peers(s, &n) || n == 0)
		return gn_err_set(err, GN_EFORBIDDEN,
				  "a client certificate is required: this server accepts only clients that present "
				  "one signed by its client CA");
	int rc = gnutls_certificate_verify_peers3(s, NULL, &status);
	if (rc < 0)
		return gn_err_set(err, GN_EFORBIDDEN, "the client certificate cannot be verified: %s",
				  gnutls_strerror(rc));
	if (status) {
		gnutls_datum_t why = {NULL, 0};
		if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) < 0)
			why.data = NULL;
		gn_err_set(err, GN_EFORBIDDEN, "the client certificate is not accepted: %s",
			   why.data ? (const char *)why.data : "it does not verify against the client CA");
		gnutls_free(why.data);
		return GN_EFORBIDDEN;
	}
	return 0;
}

void http_tls_cleanup(void)
{
	struct cred *c = atomic_exchange(&current, NULL);
	while (c) {
		struct cred *older = c->older;
		cred_free(c);
		c = older;
	}
	free(client_ca_pem);
	free(priorities);
	free(client_ca_path);
	client_ca_pem = priorities = client_ca_path = NULL;
}
