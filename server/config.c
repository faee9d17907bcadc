/* The gangliond option table and the listen-address parser. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"

#define OPT(k, t, f, d, r, mn, mx, a, h)                                \
	{                                                               \
		k, t, offsetof(struct gd_config, f), d, r, mn, mx, a, h \
	}

static const gn_conf_opt opts[] = {
	OPT("config", GN_CONF_STRING, config, NULL, false, 0, 0, "FILE", "read settings from this INI file"),
	OPT("data-dir", GN_CONF_STRING, data_dir, "/var/lib/ganglion", false, 0, 0, "DIR",
	    "state directory: admin.token, artifacts, and the private PostgreSQL cluster (pg/)"),
	OPT("listen", GN_CONF_STRING, listen, "127.0.0.1:7700", false, 0, 0, "ADDR:PORT", "address for the REST API"),
	OPT("tls-cert-file", GN_CONF_STRING, tls_cert_file, "", true, 0, 0, "FILE",
	    "serve HTTPS on listen with this PEM certificate chain (the server's certificate first; SIGHUP re-reads "
	    "it and the key without closing the listener); empty: plain HTTP"),
	OPT("tls-key-file", GN_CONF_STRING, tls_key_file, "", true, 0, 0, "FILE",
	    "the PEM private key (unencrypted) of tls-cert-file's certificate; keep it readable by gangliond only"),
	OPT("tls-client-ca-file", GN_CONF_STRING, tls_client_ca_file, "", false, 0, 0, "FILE",
	    "require every client to present a certificate signed by a CA in this PEM file, on top of its token "
	    "(403 otherwise); empty: no client certificates"),
	OPT("tls-priorities", GN_CONF_STRING, tls_priorities, "", false, 0, 0, "PRIORITIES",
	    "GnuTLS priority string: the TLS versions, ciphers and key exchanges offered; empty: TLS 1.3 and 1.2 "
	    "only, AEAD ciphers only, ECDHE key exchange (the string is logged at start)"),
	OPT("tls-required", GN_CONF_BOOL, tls_required, "false", false, 0, 0, NULL,
	    "refuse to start without tls-cert-file and tls-key-file (so a configuration that lost them cannot serve "
	    "plain HTTP)"),
	OPT("database-url", GN_CONF_STRING, database_url, "", false, 0, 0, "URL",
	    "PostgreSQL connection string; empty runs a private cluster under DATA_DIR/pg"),
	OPT("pg-bindir", GN_CONF_STRING, pg_bindir, "", false, 0, 0, "DIR",
	    "PostgreSQL server binaries for the private cluster; empty finds /usr/lib/postgresql/*/bin"),
	OPT("pg-user", GN_CONF_STRING, pg_user, "postgres", false, 0, 0, "USER",
	    "unprivileged user that runs the private cluster when gangliond runs as root"),
	OPT("log-level", GN_CONF_STRING, log_level, "info", true, 0, 0, "LEVEL", "debug, info, warn or error"),
	OPT("log-file", GN_CONF_STRING, log_file, "", true, 0, 0, "FILE", "append logs here instead of stderr"),
	OPT("threads", GN_CONF_INT, threads, "4", false, 2, 256, "N",
	    "HTTP worker threads (epoll thread pool; at least 2)"),
	OPT("db-pool-size", GN_CONF_INT, db_pool_size, "8", false, 1, 512, "N", "PostgreSQL connections"),
	OPT("db-connect-timeout", GN_CONF_DURATION, db_connect_timeout, "5s", false, 1, 300, "DURATION",
	    "give up connecting to PostgreSQL after this; a database that does not answer a probe (every second) "
	    "within it is marked unavailable, and requests get 503 at once until it answers"),
	OPT("db-statement-timeout", GN_CONF_DURATION, db_statement_timeout, "30s", false, 1, 86400, "DURATION",
	    "PostgreSQL cancels a statement that runs longer (503); with no answer at all, gangliond drops the "
	    "connection 2 s later"),
	OPT("db-pool-wait", GN_CONF_DURATION, db_pool_wait, "2s", false, 1, 3600, "DURATION",
	    "how long a request waits for a free PostgreSQL connection before it gets 503"),
	OPT("max-body", GN_CONF_SIZE, max_body, "1M", true, 1024, 1LL << 30, "SIZE",
	    "largest JSON request body (413 beyond)"),
	OPT("max-json-depth", GN_CONF_INT, max_json_depth, "32", true, 2, 1000, "N",
	    "deepest nesting accepted in a JSON body"),
	OPT("connection-timeout", GN_CONF_DURATION, connection_timeout, "30s", false, 1, 86400, "DURATION",
	    "close idle or stalled connections after this"),
	OPT("request-header-timeout", GN_CONF_DURATION, request_header_timeout, "30s", true, 1, 3600, "DURATION",
	    "cut a connection whose request headers are not all in this long after it opened or after its "
	    "previous answer (so also the longest a kept-alive connection waits idle)"),
	OPT("request-body-timeout", GN_CONF_DURATION, request_body_timeout, "60s", true, 1, 86400, "DURATION",
	    "cut a request whose body is not in this long after its headers, plus a second per min-body-rate bytes "
	    "received"),
	OPT("min-body-rate", GN_CONF_SIZE, min_body_rate, "4K", true, 1, 1LL << 30, "SIZE",
	    "bytes a second a request body (an upload) must keep up, on average, past request-body-timeout"),
	OPT("per-ip-connection-limit", GN_CONF_INT, per_ip_connection_limit, "256", false, 1, 1000000, "N",
	    "concurrent connections from one IP address"),
	OPT("connection-limit", GN_CONF_INT, connection_limit, "4096", false, 4, 1000000, "N",
	    "concurrent connections in all; past seven eighths of it, each new connection cuts the one that has "
	    "waited longest for its request headers"),
	OPT("connection-memory", GN_CONF_SIZE, connection_memory, "8K", false, 4096, 1 << 20, "SIZE",
	    "per-connection buffer for headers and body reads (small keeps keep-alive requests cheap)"),
	OPT("device-token-ttl", GN_CONF_DURATION, device_token_ttl, "1h", true, 60, 86400 * 7, "DURATION",
	    "lifetime of a device's bearer token"),
	OPT("challenge-ttl", GN_CONF_DURATION, challenge_ttl, "60s", true, 5, 3600, "DURATION",
	    "lifetime of a device authentication nonce"),
	OPT("max-device-challenges", GN_CONF_INT, max_device_challenges, "4", true, 1, 1000, "N",
	    "open authentication nonces kept per device (a new challenge drops the oldest beyond this)"),
	OPT("rate-limit-address", GN_CONF_INT, rate_limit_address, "600", true, 0, 1000000, "N",
	    "requests a minute one client address may make to each of challenge, token, enroll, upload and the GitOps webhook "
	    "(429 beyond; counted per replica; 0: no limit)"),
	OPT("rate-limit-identity", GN_CONF_INT, rate_limit_identity, "30", true, 0, 1000000, "N",
	    "requests a minute for one device (challenge, token), enrollment token (enroll) or API token "
	    "(upload) (429 beyond; counted per replica; 0: no limit)"),
	OPT("rate-limit-auth-failures", GN_CONF_INT, rate_limit_auth_failures, "600", true, 0, 1000000, "N",
	    "requests a minute one client address may send with a token that fails authentication (401); past it, "
	    "every request from that address that needs a token gets 429, whatever its token, until the allowance "
	    "refills (counted per replica; 0: no limit; else more than threads, as each request being checked "
	    "holds one of the allowance until its token is known good)"),
	OPT("shutdown-grace", GN_CONF_DURATION, shutdown_grace, "10s", true, 0, 3600, "DURATION",
	    "on SIGTERM, how long in-flight requests may take to finish"),
	OPT("housekeeping-interval", GN_CONF_DURATION, housekeeping_interval, "30s", false, 1, 3600, "DURATION",
	    "how often expired nonces are purged and TUF metadata near expiry is re-signed"),
	OPT("rollout-interval", GN_CONF_DURATION, rollout_interval, "5s", true, 1, 3600, "DURATION",
	    "how often the rollout controller judges rollouts and applies deployments (changes wake it at once)"),
	OPT("max-artifact-size", GN_CONF_SIZE, max_artifact_size, "4G", true, 1024, 1LL << 40, "SIZE",
	    "largest model artifact accepted (413 beyond, checked as the bytes arrive)"),
	OPT("max-release-metadata", GN_CONF_SIZE, max_release_metadata, "16M", true, 1024, 64LL << 20, "SIZE",
	    "largest metadata part of a publish, its sample included (413 beyond; devices fetch a sample of "
	    "at most 64M)"),
	OPT("max-sample-size", GN_CONF_SIZE, max_sample_size, "256M", true, 1024, 4LL << 30, "SIZE",
	    "largest sample tensor file (.npy) of a publish, each of at most 64 (413 beyond, checked as the bytes "
	    "arrive)"),
	OPT("artifact-sweep-grace", GN_CONF_DURATION, artifact_sweep_grace, "1h", false, 0, 86400LL * 30, "DURATION",
	    "at start-up, delete stored artifacts that no published version references (a publish cut short) "
	    "and temp upload files, once unchanged for this long (a younger one may be another replica's upload)"),
	OPT("artifact-store", GN_CONF_STRING, artifact_store, "dir", false, 0, 0, "KIND",
	    "where artifacts live: dir (artifact-dir, or DATA_DIR/artifacts) or s3 (artifact-s3-url); every replica "
	    "must reach the same store"),
	OPT("artifact-dir", GN_CONF_STRING, artifact_dir, "", false, 0, 0, "DIR",
	    "artifact-store dir: a directory every replica mounts (NFS, CephFS...); empty: DATA_DIR/artifacts, for "
	    "one replica"),
	OPT("artifact-s3-url", GN_CONF_STRING, artifact_s3_url, "", false, 0, 0, "URL",
	    "artifact-store s3: https://HOST[:PORT]/BUCKET[/PREFIX] of an S3-compatible store (path-style); the "
	    "bucket must exist"),
	OPT("artifact-s3-region", GN_CONF_STRING, artifact_s3_region, "us-east-1", false, 0, 0, "REGION",
	    "artifact-store s3: the region requests are signed for (AWS SigV4)"),
	OPT("artifact-s3-access-key", GN_CONF_STRING, artifact_s3_access_key, "", false, 0, 0, "KEY",
	    "artifact-store s3: the access key id"),
	OPT("artifact-s3-secret-key-file", GN_CONF_STRING, artifact_s3_secret_key_file, "", false, 0, 0, "FILE",
	    "artifact-store s3: a file holding the secret access key (one line; keep it readable by gangliond only)"),
	OPT("artifact-s3-part-size", GN_CONF_SIZE, artifact_s3_part_size, "16M", false, 5LL << 20, 1LL << 30, "SIZE",
	    "artifact-store s3: an upload streams in parts this large (memory per upload in flight); a smaller "
	    "artifact is sent in one request"),
	OPT("artifact-s3-timeout", GN_CONF_DURATION, artifact_s3_timeout, "30s", false, 1, 3600, "DURATION",
	    "artifact-store s3: a request to the store that moves no byte for this long fails (503)"),
	OPT("tuf-root-keys", GN_CONF_INT, tuf_root_keys, "1", false, 1, 16, "N",
	    "root keys generated on first start (written to DATA_DIR/keys; move them offline at will)"),
	OPT("tuf-root-threshold", GN_CONF_INT, tuf_root_threshold, "1", false, 1, 16, "N",
	    "signatures a root needs (at most tuf-root-keys)"),
	OPT("tuf-root-expiry", GN_CONF_DURATION, tuf_root_expiry, "365d", false, 3600, 86400LL * 3650, "DURATION",
	    "lifetime of root metadata"),
	OPT("tuf-targets-expiry", GN_CONF_DURATION, tuf_targets_expiry, "90d", false, 60, 86400LL * 3650, "DURATION",
	    "lifetime of targets metadata"),
	OPT("tuf-snapshot-expiry", GN_CONF_DURATION, tuf_snapshot_expiry, "7d", false, 10, 86400LL * 365, "DURATION",
	    "lifetime of snapshot metadata"),
	OPT("tuf-timestamp-expiry", GN_CONF_DURATION, tuf_timestamp_expiry, "1d", false, 4, 86400LL * 30, "DURATION",
	    "lifetime of timestamp metadata (re-signed when half of it is left)"),
	OPT("tuf-director-expiry", GN_CONF_DURATION, tuf_director_expiry, "1d", false, 4, 86400LL * 30, "DURATION",
	    "lifetime of a device's director targets (re-signed at check-in when half of it is left)"),
	OPT("tuf-anonymous-read", GN_CONF_BOOL, tuf_anonymous_read, "false", true, 0, 0, NULL,
	    "serve the image repository (its metadata and its targets) without a token, e.g. to a site mirror or a "
	    "CDN; the director always needs the device's own token"),
	OPT("max-report-size", GN_CONF_SIZE, max_report_size, "64K", true, 1024, 1LL << 20, "SIZE",
	    "largest check-in report (models, last operation, agent version and facts; 413 beyond)"),
	OPT("device-reports-per-hour", GN_CONF_INT, device_reports_per_hour, "120", true, 1, 1000000, "N",
	    "changed reports and new events recorded per device and hour; check-ins beyond are answered but "
	    "not recorded"),
	OPT("agent-poll-interval", GN_CONF_DURATION, agent_poll_interval, "60s", true, 1, 86400, "DURATION",
	    "check-in interval the server gives agents (they add jitter)"),
	OPT("gitops-repository", GN_CONF_STRING, gitops_repository, "", true, 0, 0, "URL",
	    "git repository holding the fleet's desired state (docs/GITOPS.md): an absolute path, or a file://, "
	    "git://, https:// or ssh:// URL; empty: GitOps off"),
	OPT("gitops-branch", GN_CONF_STRING, gitops_branch, "main", true, 0, 0, "BRANCH",
	    "the branch whose head commit is applied"),
	OPT("gitops-path", GN_CONF_STRING, gitops_path, "", true, 0, 0, "DIR",
	    "directory of the repository holding the documents (*.yaml, *.yml, *.json); empty: all of it"),
	OPT("gitops-interval", GN_CONF_DURATION, gitops_interval, "60s", true, 1, 86400, "DURATION",
	    "how often the branch is fetched (a webhook or `ganglion gitops sync` syncs at once)"),
	OPT("gitops-timeout", GN_CONF_DURATION, gitops_timeout, "60s", true, 1, 3600, "DURATION",
	    "give up a fetch that takes longer (the last applied state stays)"),
	OPT("gitops-token-file", GN_CONF_STRING, gitops_token_file, "", true, 0, 0, "FILE",
	    "https repository: a file holding an access token, sent as the password"),
	OPT("gitops-ssh-key", GN_CONF_STRING, gitops_ssh_key, "", true, 0, 0, "FILE",
	    "ssh repository: the private key (without a passphrase)"),
	OPT("gitops-ssh-known-hosts", GN_CONF_STRING, gitops_ssh_known_hosts, "", true, 0, 0, "FILE",
	    "ssh repository: known_hosts file that must list the server's host key"),
	OPT("gitops-allowed-signers", GN_CONF_STRING, gitops_allowed_signers, "", true, 0, 0, "FILE",
	    "apply only commits with an SSH signature by a key in this file (git's allowed_signers format); "
	    "empty: signatures are not checked"),
	OPT("gitops-webhook-secret-file", GN_CONF_STRING, gitops_webhook_secret_file, "", true, 0, 0, "FILE",
	    "shared secret (at least 16 bytes) that authenticates POST /v1/gitops/hook; empty: no webhook"),
	OPT("gitops-prune", GN_CONF_BOOL, gitops_prune, "true", true, 0, 0, NULL,
	    "delete objects that were applied from git and are no longer in it (false: keep them, unmanaged)"),
	OPT("telemetry-retention", GN_CONF_DURATION, telemetry_retention, "30d", true, 86400, 86400LL * 3650,
	    "DURATION",
	    "how long devices' telemetry windows are kept (the job drops a UTC day's partitions once all of it is "
	    "older); an older window a device sends is acknowledged and not stored"),
	OPT("telemetry-max-windows", GN_CONF_INT, telemetry_max_windows, "500", true, 1, 100000, "N",
	    "windows one telemetry batch may hold (413 beyond; the body is also bounded by max-body)"),
	OPT("alert-interval", GN_CONF_DURATION, alert_interval, "60s", true, 1, 3600, "DURATION",
	    "how often the drift alert rules are judged against the fleet's telemetry"),
	OPT("rollout-poll-interval", GN_CONF_DURATION, rollout_poll_interval, "10s", true, 1, 86400, "DURATION",
	    "check-in interval for devices in the current stage of a running rollout, so they install and report "
	    "sooner (agent-poll-interval when that is shorter)"),
};

const gn_conf_table config_table = {"gangliond", "GANGLIOND_", opts, GN_ARRAY_LEN(opts)};

int64_t config_poll_interval(const struct gd_config *cfg, bool in_rollout_stage)
{
	if (in_rollout_stage && cfg->rollout_poll_interval < cfg->agent_poll_interval)
		return cfg->rollout_poll_interval;
	return cfg->agent_poll_interval;
}

int config_parse_listen(struct sockaddr_storage *out, const char *listen, gn_err *err)
{
	char host[128];
	const char *colon = strrchr(listen, ':');
	memset(out, 0, sizeof(*out));
	if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof(host))
		return gn_err_set(err, GN_EINVAL, "listen address '%s' must be ADDR:PORT", listen);
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || port < 0 || port > 65535)
		return gn_err_set(err, GN_EINVAL, "listen address '%s' has a bad port", listen);
	memcpy(host, listen, (size_t)(colon - listen));
	host[colon - listen] = '\0';
	if (host[0] == '[') {
		size_t n = strlen(host);
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)out;
		if (n < 3 || host[n - 1] != ']')
			return gn_err_set(err, GN_EINVAL, "listen address '%s': bad IPv6 address", listen);
		host[n - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
			return gn_err_set(err, GN_EINVAL, "listen address '%s': bad IPv6 address", listen);
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		return 0;
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)out;
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		return gn_err_set(err, GN_EINVAL, "listen address '%s': '%s' is not an IPv4 address", listen, host);
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	return 0;
}

/* Every snapshot installed so far, newest first; `running` is the head. */
struct snapshot {
	struct gd_config cfg;
	struct snapshot *older;
};
static _Atomic(struct snapshot *) running;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;

const struct gd_config *config_get(void)
{
	struct snapshot *s = atomic_load_explicit(&running, memory_order_acquire);
	return s ? &s->cfg : NULL;
}

static void install(struct snapshot *s)
{
	pthread_mutex_lock(&install_lock);
	s->older = atomic_load(&running);
	atomic_store_explicit(&running, s, memory_order_release);
	pthread_mutex_unlock(&install_lock);
}

void config_install(struct gd_config *cfg)
{
	struct snapshot *s = gn_calloc(1, sizeof(*s));
	s->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	install(s);
}

/* Copies every key of src into dst (strings duplicated). */
static void copy_all(struct gd_config *dst, const struct gd_config *src)
{
	*dst = *src;
	for (size_t i = 0; i < GN_ARRAY_LEN(opts); i++) {
		if (opts[i].type != GN_CONF_STRING)
			continue;
		char **f = (char **)((char *)dst + opts[i].offset);
		if (*f)
			*f = gn_strdup(*f);
	}
}

/* Warns, naming each, about the settings that differ in fresh but apply only at a restart (their
 * values are not logged: database-url may hold a password). */
static void warn_fixed(const struct gd_config *now, const struct gd_config *fresh)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(opts); i++) {
		const gn_conf_opt *o = &opts[i];
		const char *a = (const char *)now + o->offset, *b = (const char *)fresh + o->offset;
		bool same;
		if (o->reload)
			continue;
		switch (o->type) {
		case GN_CONF_STRING: {
			const char *x = *(char *const *)a, *y = *(char *const *)b;
			same = strcmp(x ? x : "", y ? y : "") == 0;
			break;
		}
		case GN_CONF_BOOL: same = *(const bool *)a == *(const bool *)b; break;
		default: same = *(const int64_t *)a == *(const int64_t *)b; break;
		}
		if (!same)
			gn_log(GN_LOG_WARN,
			       "event=reload_setting_ignored key=%s msg=\"%s changed, but it cannot change while gangliond "
			       "runs: the running value stays until a restart\"",
			       o->key, o->key);
	}
}

void config_reload_from(struct gd_config *fresh)
{
	struct snapshot *s = gn_calloc(1, sizeof(*s));
	pthread_mutex_lock(&install_lock);
	copy_all(&s->cfg, config_get());
	pthread_mutex_unlock(&install_lock);
	warn_fixed(&s->cfg, fresh);
	gn_conf_copy_reloadable(&config_table, &s->cfg, fresh);
	install(s);
}

void config_free_all(void)
{
	struct snapshot *s = atomic_exchange(&running, NULL);
	while (s) {
		struct snapshot *older = s->older;
		gn_conf_cleanup(&config_table, &s->cfg);
		free(s);
		s = older;
	}
}
