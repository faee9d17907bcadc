/* gangliond: start-up, commands (serve, migrate, routes, sample-config, man), signals, housekeeping. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/file.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "auth.h"
#include "fileio.h"
#include "gangliond.h"
#include "http.h"
#include "http_tls.h"
#include "log.h"
#include "manpage.h"
#include "migrate.h"
#include "models.h"
#include "pgcluster.h"
#include "ratelimit.h"
#include "artifacts.h"
#include "background.h"
#include "checkin_cache.h"
#include "device_tokens.h"
#include "last_seen.h"
#include "gitops.h"
#include "jobs.h"
#include "notify.h"
#include "tuf_keys.h"
#include "version.h"

extern char **environ;

struct gd_server gd;

static const char usage[] =
	"usage: gangliond [OPTIONS] [COMMAND]\n"
	"\n"
	"The Ganglion control plane: device inventory, model registry and rollouts over a REST API.\n"
	"\n"
	"Commands:\n"
	"  serve          run the server (the default)\n"
	"  migrate        apply pending database migrations and exit\n"
	"  routes         print the REST routes this server serves\n"
	"  sample-config  print a config file with every key and its default\n"
	"  man            print the manual page gangliond(8) in roff (man -l -)\n"
	"  man-config     print the manual page gangliond.conf(5) in roff";

static void apply_log_level(const struct gd_config *c)
{
	enum gn_log_level lvl;
	if (gn_log_level_parse(&lvl, c->log_level) == 0)
		gn_log_set_level(lvl);
}

/* The artifact-store keys: one backend, and every key given belongs to it. */
static int check_artifact_store(const struct gd_config *c, gn_err *err)
{
	bool s3 = strcmp(c->artifact_store, "s3") == 0;
	if (!s3 && strcmp(c->artifact_store, "dir") != 0)
		return gn_err_set(err, GN_EINVAL, "artifact-store must be dir or s3, not '%s'", c->artifact_store);
	if (!s3) {
		if (*c->artifact_s3_url || *c->artifact_s3_access_key || *c->artifact_s3_secret_key_file)
			return gn_err_set(
				err, GN_EINVAL,
				"artifact-s3-* keys are set but artifact-store is dir: set artifact-store = s3, "
				"or remove them");
		return 0;
	}
	if (*c->artifact_dir)
		return gn_err_set(err, GN_EINVAL, "artifact-dir is set but artifact-store is s3: remove one");
	if (!*c->artifact_s3_url || !*c->artifact_s3_access_key || !*c->artifact_s3_secret_key_file)
		return gn_err_set(err, GN_EINVAL,
				  "artifact-store s3 needs artifact-s3-url, artifact-s3-access-key and "
				  "artifact-s3-secret-key-file");
	if (!*c->artifact_s3_region ||
	    strspn(c->artifact_s3_region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(c->artifact_s3_region))
		return gn_err_set(err, GN_EINVAL, "artifact-s3-region '%s' is not a region name (like eu-west-1)",
				  c->artifact_s3_region);
	if (c->max_artifact_size > 5LL << 30)
		return gn_err_set(err, GN_EINVAL,
				  "with artifact-store s3, max-artifact-size may be at most 5G (one server-side copy)");
	return artifacts_s3_url_check(c->artifact_s3_url, err);
}

/* Opens the artifact store the configuration names. */
static int open_artifact_store(const struct gd_config *cfg, gn_err *err)
{
	struct artifacts_settings s = {
		.kind = strcmp(cfg->artifact_store, "s3") == 0 ? ARTIFACTS_S3 : ARTIFACTS_DIR,
		.s3_url = cfg->artifact_s3_url,
		.s3_region = cfg->artifact_s3_region,
		.s3_access_key = cfg->artifact_s3_access_key,
		.s3_part_size = cfg->artifact_s3_part_size,
		.s3_timeout_s = cfg->artifact_s3_timeout,
	};
	char *dir = *cfg->artifact_dir ? gn_strdup(cfg->artifact_dir) : gn_asprintf("%s/artifacts", cfg->data_dir);
	char *secret = NULL;
	int rc = 0;
	s.dir = dir;
	if (s.kind == ARTIFACTS_S3)
		rc = gn_secret_file_read(&secret, cfg->artifact_s3_secret_key_file, 4096, err);
	s.s3_secret_key = secret;
	if (!rc)
		rc = artifacts_init(&s, err);
	if (secret)
		OPENSSL_cleanse(secret, strlen(secret));
	free(secret);
	free(dir);
	return rc;
}

static int check_config(const struct gd_config *c, gn_err *err)
{
	enum gn_log_level lvl;
	struct sockaddr_storage ss;
	if (gn_log_level_parse(&lvl, c->log_level))
		return gn_err_set(err, GN_EINVAL, "log-level must be debug, info, warn or error, not '%s'",
				  c->log_level);
	if (c->tuf_root_threshold > c->tuf_root_keys)
		return gn_err_set(err, GN_EINVAL, "tuf-root-threshold (%lld) exceeds tuf-root-keys (%lld)",
				  (long long)c->tuf_root_threshold, (long long)c->tuf_root_keys);
	if (!c->data_dir || !*c->data_dir)
		return gn_err_set(err, GN_EINVAL, "data-dir must be set");
	/* Each request whose token is looked up holds one of its address's allowance while it is (so
	 * parallel guesses get no more than the allowance), and up to `threads` are looked up at once:
	 * an allowance that small would refuse good requests sent in parallel. */
	if (c->rate_limit_auth_failures > 0 && c->rate_limit_auth_failures <= c->threads)
		return gn_err_set(err, GN_EINVAL,
				  "rate-limit-auth-failures (%lld) must be 0 (no limit) or more than threads (%lld): "
				  "each of up to threads requests checked at once holds one of the allowance",
				  (long long)c->rate_limit_auth_failures, (long long)c->threads);
	if (gitops_check_config(c, err))
		return GN_EINVAL;
	if (check_artifact_store(c, err))
		return GN_EINVAL;
	if (http_tls_check_config(c, err))
		return GN_EINVAL;
	return config_parse_listen(&ss, c->listen, err);
}

/* Re-reads the configuration; applies only the reloadable keys, and only if all of it parses. */
static void reload(int argc, char **argv)
{
	struct gd_config fresh;
	gn_err err;
	int first;
	bool help;
	memset(&fresh, 0, sizeof(fresh));
	if (gn_conf_load_all(&first, &help, &config_table, &fresh, argc - 1, argv + 1, environ, &err) ||
	    check_config(&fresh, &err) || http_tls_reload(&fresh, &err)) {
		gn_log(GN_LOG_ERROR, "event=reload_failed msg=\"%s\" note=\"kept the running configuration\"", err.msg);
		gn_conf_cleanup(&config_table, &fresh);
		return;
	}
	config_reload_from(&fresh);
	gn_conf_cleanup(&config_table, &fresh);
	if (gn_log_open(config_get()->log_file, &err))
		gn_log(GN_LOG_ERROR, "event=reload_log_file_failed msg=\"%s\"", err.msg);
	apply_log_level(config_get());
	gn_log(GN_LOG_INFO, "event=reloaded");
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *copy = gn_strdup(path);
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
			free(copy);
			return -1;
		}
		*p = '/';
	}
	free(copy);
	return mkdir(path, mode) < 0 && errno != EEXIST ? -1 : 0;
}

/* Takes signals until one says stop; periodic work runs on the job scheduler (jobs.c). */
static int serve_loop(int argc, char **argv, sigset_t *set)
{
	for (;;) {
		int sig = sigwaitinfo(set, NULL);
		if (sig == SIGTERM || sig == SIGINT) {
			gn_log(GN_LOG_INFO, "event=shutdown signal=%s grace_s=%lld", sig == SIGTERM ? "TERM" : "INT",
			       (long long)config_get()->shutdown_grace);
			return 0;
		}
		if (sig == SIGHUP)
			reload(argc, argv);
	}
}

/* The NOTIFY channels gangliond listens on, and who gets them. */
/* The device token state is read again (on the background thread) each time listening starts. */
static void device_tokens_listening(bool up)
{
	device_tokens_on_listening(up);
	if (up)
		background_wake();
}

/* A new key's secret is read from the table (on the background thread, or by the first request
 * that needs it). */
static void device_token_keys_notify(const char *payload)
{
	device_tokens_on_key_notify(payload);
	background_wake();
}

static const struct notify_channel channels[] = {
	{"gn_director", checkin_cache_on_notify, checkin_cache_on_listening, NULL},
	{"gn_device_tokens", device_tokens_on_notify, device_tokens_listening, "gn_device_tokens_ack"},
	{"gn_device_tokens_ack", device_tokens_on_ack, NULL, NULL},
	{"gn_device_token_keys", device_token_keys_notify, NULL, "gn_device_token_keys_ack"},
	{"gn_device_token_keys_ack", device_tokens_on_key_ack, NULL, NULL},
	{"gn_jobs", jobs_on_notify, NULL, NULL},
};

/* Says why the data dir cannot be used, from the errno of creating it or its lock file. */
static void data_dir_failed(const char *data_dir, const char *what, int e)
{
	const char *why = e == EROFS
				  ? "it is on a read-only file system; gangliond writes its lock, keys and artifacts "
				    "(and the private cluster) there"
			  : e == EACCES ? "permission denied; gangliond needs to write there"
					: strerror(e);
	gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"cannot %s data-dir %s: %s\"", what, data_dir, why);
}

/* Opens the data dir and takes its lock: one gangliond per data dir (a second one would share,
 * and on exit stop, the private cluster). Returns the lock's fd, or -1 after logging why. */
static int lock_data_dir(const char *data_dir)
{
	struct stat st;
	if (mkdir_p(data_dir, 0700) < 0) {
		data_dir_failed(data_dir, "create", errno);
		return -1;
	}
	if (stat(data_dir, &st) < 0) {
		data_dir_failed(data_dir, "use", errno);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"data-dir %s is not a directory (%s is there)\"",
		       data_dir, S_ISREG(st.st_mode) ? "a file" : "something else");
		return -1;
	}
	char *lockpath = gn_asprintf("%s/gangliond.lock", data_dir);
	int fd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		data_dir_failed(data_dir, "lock", errno);
	} else if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		gn_log(GN_LOG_ERROR,
		       "event=startup_failed msg=\"data-dir %s is in use by another gangliond (lock %s): "
		       "give each replica its own data-dir\"",
		       data_dir, lockpath);
		close(fd);
		fd = -1;
	}
	free(lockpath);
	return fd;
}

/* Binds the API's address before the database, the admin token and the root keys are set up, so
 * that a taken address fails at once, named. Returns the socket (not yet listening), or -1 after
 * logging why. */
static int bind_listener(const struct sockaddr_storage *addr, const char *listen)
{
	int one = 1, e;
	socklen_t len = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
	    (addr->ss_family != AF_INET6 || setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) == 0) &&
	    bind(fd, (const struct sockaddr *)addr, len) == 0)
		return fd;
	e = errno;
	if (fd >= 0)
		close(fd);
	gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"cannot listen on %s: %s%s\"", listen, strerror(e),
	       e == EADDRINUSE      ? " (another process listens there; choose another address with --listen)"
	       : e == EADDRNOTAVAIL ? " (no interface of this machine has that address)"
	       : e == EACCES        ? " (a port below 1024 needs privileges)"
				    : "");
	return -1;
}

/* Migrates and, for `serve`, prepares what serving needs: the first admin token, the artifact
 * store, the TUF repositories. */
static int prepare_database(const struct gd_config *cfg, bool serve, gn_err *err)
{
	struct tuf_settings ts;
	tuf_sign_settings(&ts, cfg);
	db_conn *c = db_acquire(gd.pool);
	int rc = migrate_run(c, err);
	if (!rc && serve && !(rc = auth_bootstrap_admin(c, cfg->data_dir, err)) &&
	    !(rc = open_artifact_store(cfg, err)) && !(rc = models_sweep_artifacts(c, cfg->artifact_sweep_grace, err)))
		rc = tuf_keys_init(c, &ts, err);
	db_release(gd.pool, c);
	return rc;
}

/* Handles the commands that need no database; returns -1 for the others. */
static int offline_command(const char *cmd)
{
	if (strcmp(cmd, "routes") == 0) {
		size_t n;
		const struct gd_route *r = http_routes(&n);
		for (size_t i = 0; i < n; i++)
			printf("%s %s\n", r[i].method, r[i].pattern);
		return 0;
	}
	if (strcmp(cmd, "sample-config") == 0) {
		char *s = gn_conf_sample_dup(&config_table);
		fputs(s, stdout);
		free(s);
		return 0;
	}
	if (strcmp(cmd, "man") == 0 || strcmp(cmd, "man-config") == 0)
		return manpage_print(stdout, usage, cmd);
	if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0) {
		fprintf(stderr, "gangliond: unknown command '%s' (see --help)\n", cmd);
		return 2;
	}
	return -1;
}

/* Runs the server until SIGTERM/SIGINT: NOTIFY listener, job scheduler, HTTP on listen_fd (bound,
 * taken over). */
static int serve(int argc, char **argv, sigset_t *set, const char *conninfo, int listen_fd,
		 const struct sockaddr_storage *addr, bool private_db)
{
	gn_err err;
	const struct gd_config *cfg = config_get();
	int rc = 1;
	/* From here on no wait on PostgreSQL is unbounded (start-up work above may take long). */
	struct db_limits limits = {cfg->db_connect_timeout, cfg->db_statement_timeout, cfg->db_pool_wait};
	checkin_cache_init();
	last_seen_init();
	db_conn *c = db_acquire(gd.pool);
	int init_rc = device_tokens_init(c, &err);
	db_release(gd.pool, c);
	if (init_rc || db_pool_set_limits(gd.pool, &limits, &err) || background_start(gd.pool, &err) ||
	    notify_start(conninfo, channels, GN_ARRAY_LEN(channels), &err) || jobs_start(gd.pool, &err)) {
		close(listen_fd);
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (http_start(listen_fd, (const struct sockaddr *)addr, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (*cfg->gitops_repository)
		jobs_wake("gitops"); /* the first sync at once, not an interval later */
	gn_log(GN_LOG_INFO, "event=listening addr=%s scheme=%s threads=%lld db_pool=%lld database=%s", cfg->listen,
	       http_tls_enabled() ? "https" : "http", (long long)cfg->threads, (long long)cfg->db_pool_size,
	       private_db ? "private" : "external");
	rc = serve_loop(argc, argv, set);
	http_stop(config_get()->shutdown_grace);
	background_stop(); /* the last last-seen write, after the last check-in */
	ratelimit_reset();
	gn_log(GN_LOG_INFO, "event=stopped");
out:
	background_stop();
	jobs_stop();
	notify_stop();
	checkin_cache_cleanup();
	http_health_cleanup();
	last_seen_cleanup();
	device_tokens_cleanup();
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 1, first = 0, lockfd = -1, listen_fd = -1;
	bool help = false;
	gn_err err;
	pgcluster *pg = NULL;
	char *conninfo = NULL;
	sigset_t set;
	struct sockaddr_storage addr;
	struct gd_config boot;
	const struct gd_config *cfg = NULL;

	if (gn_version_wanted(&config_table, argc - 1, argv + 1)) {
		printf("gangliond %s\n", gn_version());
		return 0;
	}
	memset(&boot, 0, sizeof(boot));
	if (gn_conf_load_all(&first, &help, &config_table, &boot, argc - 1, argv + 1, environ, &err)) {
		fprintf(stderr, "gangliond: %s\n", err.msg);
		gn_conf_cleanup(&config_table, &boot);
		return 2;
	}
	config_install(&boot);
	cfg = config_get();
	const char *cmd = first + 1 < argc ? argv[first + 1] : "serve";
	if (help) {
		char *h = gn_conf_help_dup(&config_table, usage);
		fputs(h, stdout);
		free(h);
		rc = 0;
		goto out;
	}
	if (first + 2 < argc) {
		fprintf(stderr, "gangliond: unexpected argument '%s' (options go before the command)\n",
			argv[first + 2]);
		rc = 2;
		goto out;
	}
	if ((rc = offline_command(cmd)) >= 0)
		goto out;
	rc = 1;
	if (check_config(cfg, &err) || config_parse_listen(&addr, cfg->listen, &err) ||
	    gn_log_open(cfg->log_file, &err)) {
		fprintf(stderr, "gangliond: %s\n", err.msg);
		rc = 2;
		goto out;
	}
	apply_log_level(cfg);
	if ((lockfd = lock_data_dir(cfg->data_dir)) < 0)
		goto out;
	if (strcmp(cmd, "serve") == 0 && http_tls_init(cfg, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (strcmp(cmd, "serve") == 0 && (listen_fd = bind_listener(&addr, cfg->listen)) < 0)
		goto out;

	/* Signals are taken synchronously by the main thread; worker threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!*cfg->database_url) {
		if (pgcluster_start(&pg, &conninfo, cfg->data_dir, cfg->pg_bindir, cfg->pg_user, &err)) {
			gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
			goto out;
		}
	} else {
		conninfo = gn_strdup(cfg->database_url);
	}
	if (db_pool_new(&gd.pool, conninfo, (int)cfg->db_pool_size, &err) ||
	    prepare_database(cfg, strcmp(cmd, "serve") == 0, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (strcmp(cmd, "migrate") == 0) {
		gn_log(GN_LOG_INFO, "event=migrated");
		rc = 0;
		goto out;
	}
	rc = serve(argc, argv, &set, conninfo, listen_fd, &addr, pg != NULL);
	listen_fd = -1; /* taken over by the HTTP server */
out:
	if (listen_fd >= 0)
		close(listen_fd);
	db_pool_free(gd.pool);
	gd.pool = NULL;
	artifacts_cleanup();
	pgcluster_stop(pg);
	if (lockfd >= 0)
		close(lockfd);
	free(conninfo);
	config_free_all();
	http_tls_cleanup();
	if (gn_log_open(NULL, &err)) { /* nothing left to report to */
	}
	return rc;
}
