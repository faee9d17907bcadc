/* gangliond's configuration: one table drives flags, GANGLIOND_* variables, the INI file,
 * --help and packaging/gangliond.conf. */
#ifndef GD_CONFIG_H
#define GD_CONFIG_H

#include "conf.h"

struct gd_config {
	char *config;
	char *data_dir;
	char *listen;
	char *tls_cert_file;
	char *tls_key_file;
	char *tls_client_ca_file;
	char *tls_priorities;
	bool tls_required;
	char *database_url;
	char *pg_bindir;
	char *pg_user;
	char *log_level;
	char *log_file;
	int64_t threads;
	int64_t db_pool_size;
	int64_t db_connect_timeout;
	int64_t db_statement_timeout;
	int64_t db_pool_wait;
	int64_t max_body;
	int64_t max_release_metadata;
	int64_t max_sample_size;
	int64_t max_json_depth;
	int64_t connection_timeout;
	int64_t request_header_timeout;
	int64_t request_body_timeout;
	int64_t min_body_rate;
	int64_t per_ip_connection_limit;
	int64_t connection_limit;
	int64_t connection_memory;
	int64_t device_token_ttl;
	int64_t challenge_ttl;
	int64_t max_device_challenges;
	int64_t rate_limit_address;
	int64_t rate_limit_identity;
	int64_t rate_limit_auth_failures;
	int64_t shutdown_grace;
	int64_t housekeeping_interval;
	int64_t rollout_interval;
	int64_t max_artifact_size;
	int64_t artifact_sweep_grace;
	char *artifact_store;
	char *artifact_dir;
	char *artifact_s3_url;
	char *artifact_s3_region;
	char *artifact_s3_access_key;
	char *artifact_s3_secret_key_file;
	int64_t artifact_s3_part_size;
	int64_t artifact_s3_timeout;
	int64_t tuf_root_keys;
	int64_t tuf_root_threshold;
	int64_t tuf_root_expiry;
	int64_t tuf_targets_expiry;
	int64_t tuf_snapshot_expiry;
	int64_t tuf_timestamp_expiry;
	int64_t tuf_director_expiry;
	bool tuf_anonymous_read;
	int64_t agent_poll_interval;
	int64_t rollout_poll_interval;
	int64_t max_report_size;
	int64_t device_reports_per_hour;
	char *gitops_repository;
	char *gitops_branch;
	char *gitops_path;
	int64_t gitops_interval;
	int64_t gitops_timeout;
	char *gitops_token_file;
	char *gitops_ssh_key;
	char *gitops_ssh_known_hosts;
	char *gitops_allowed_signers;
	char *gitops_webhook_secret_file;
	bool gitops_prune;
	int64_t telemetry_retention;
	int64_t telemetry_max_windows;
	int64_t alert_interval;
};

extern const gn_conf_table config_table;

/* The cipher policy when tls-priorities is empty: TLS 1.3 and 1.2 only, AEAD ciphers, ECDHE key exchange (forward
 * secrecy), the server's order of preference. */
#define GD_TLS_PRIORITIES_DEFAULT                                                                             \
	"SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:+AES-128-" \
	"GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE"

/* The running configuration is one snapshot, replaced whole when SIGHUP reloads it, so a reader
 * never sees half of an old and half of a new one. config_get returns it borrowed: a replaced
 * snapshot is kept (a few hundred bytes per reload) until config_free_all at exit, so a pointer
 * taken by a request stays valid while it runs. */
const struct gd_config *config_get(void);
/* Makes cfg (taken over, emptied) the running snapshot. */
void config_install(struct gd_config *cfg);
/* Installs a new snapshot: the running one with the reloadable keys of fresh (fresh is emptied
 * of what it gave and must still be cleaned up). Logs a warning naming each key that changed in
 * fresh but is not reloadable (listen, data-dir, database-url, threads, ...). */
void config_reload_from(struct gd_config *fresh);
/* Frees every snapshot (at exit, when nothing reads them any more). */
void config_free_all(void);

/* The check-in interval for a device: agent-poll-interval, or for a device in the current stage of
 * a running rollout rollout-poll-interval when that is shorter. */
int64_t config_poll_interval(const struct gd_config *cfg, bool in_rollout_stage);

/* Splits "ADDR:PORT" or "[V6]:PORT" into a socket address; GN_EINVAL with a message otherwise. */
struct sockaddr_storage;
int config_parse_listen(struct sockaddr_storage *out, const char *listen, gn_err *err) GN_WUR;

#endif
