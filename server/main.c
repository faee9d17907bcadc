/* gangliond: start-up, commands (serve, migrate, routes, sample-config), signals, housekeeping. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "gangliond.h"
#include "http.h"
#include "log.h"
#include "migrate.h"
#include "pgcluster.h"
#include "artifacts.h"
#include "checkin_cache.h"
#include "tufrepo.h"

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
	"  sample-config  print a config file with every key and its default";

static void apply_live_settings(const struct gd_config *c)
{
	enum gn_log_level lvl;
	atomic_store(&gd.max_body, c->max_body);
	atomic_store(&gd.max_json_depth, c->max_json_depth);
	atomic_store(&gd.device_token_ttl, c->device_token_ttl);
	atomic_store(&gd.challenge_ttl, c->challenge_ttl);
	atomic_store(&gd.max_artifact_size, c->max_artifact_size);
	atomic_store(&gd.agent_poll_interval, c->agent_poll_interval);
	if (gn_log_level_parse(&lvl, c->log_level) == 0)
		gn_log_set_level(lvl);
}

static int check_config(const struct gd_config *c, gn_err *err)
{
	enum gn_log_level lvl;
	struct sockaddr_storage ss;
	if (gn_log_level_parse(&lvl, c->log_level))
		return gn_err_set(err, GN_EINVAL, "log-level must be debug, info, warn or error, not '%s'", c->log_level);
	if (c->tuf_root_threshold > c->tuf_root_keys)
		return gn_err_set(err, GN_EINVAL, "tuf-root-threshold (%lld) exceeds tuf-root-keys (%lld)",
				  (long long)c->tuf_root_threshold, (long long)c->tuf_root_keys);
	if (!c->data_dir || !*c->data_dir)
		return gn_err_set(err, GN_EINVAL, "data-dir must be set");
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
	    check_config(&fresh, &err)) {
		gn_log(GN_LOG_ERROR, "event=reload_failed msg=\"%s\" note=\"kept the running configuration\"", err.msg);
		gn_conf_cleanup(&config_table, &fresh);
		return;
	}
	gn_conf_copy_reloadable(&config_table, &gd.cfg, &fresh);
	gn_conf_cleanup(&config_table, &fresh);
	if (gn_log_open(gd.cfg.log_file, &err))
		gn_log(GN_LOG_ERROR, "event=reload_log_file_failed msg=\"%s\"", err.msg);
	apply_live_settings(&gd.cfg);
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

static int serve_loop(int argc, char **argv, sigset_t *set)
{
	for (;;) {
		struct timespec ts = {(time_t)gd.cfg.housekeeping_interval, 0};
		int sig = sigtimedwait(set, NULL, &ts);
		if (sig == SIGTERM || sig == SIGINT) {
			gn_log(GN_LOG_INFO, "event=shutdown signal=%s grace_s=%lld", sig == SIGTERM ? "TERM" : "INT",
			       (long long)gd.cfg.shutdown_grace);
			return 0;
		}
		if (sig == SIGHUP) {
			reload(argc, argv);
			continue;
		}
		if (sig < 0 && errno == EAGAIN) {
			/* Housekeeping: expired nonces and sessions; TUF metadata near its expiry. */
			gn_err err;
			db_conn *c = db_acquire(gd.pool);
			if (http_agent_gc(c, &err))
				gn_log(GN_LOG_WARN, "event=housekeeping_failed task=gc msg=\"%s\"", err.msg);
			if (tufrepo_refresh(c, &err))
				gn_log(GN_LOG_WARN, "event=housekeeping_failed task=tuf_refresh msg=\"%s\"", err.msg);
			db_release(gd.pool, c);
		}
	}
}

int main(int argc, char **argv)
{
	int rc = 1, first = 0, lockfd = -1;
	bool help = false;
	gn_err err;
	pgcluster *pg = NULL;
	char *conninfo = NULL;
	sigset_t set;
	struct sockaddr_storage addr;

	if (gn_conf_load_all(&first, &help, &config_table, &gd.cfg, argc - 1, argv + 1, environ, &err)) {
		fprintf(stderr, "gangliond: %s\n", err.msg);
		gn_conf_cleanup(&config_table, &gd.cfg);
		return 2;
	}
	const char *cmd = first + 1 < argc ? argv[first + 1] : "serve";
	if (help) {
		char *h = gn_conf_help_dup(&config_table, usage);
		fputs(h, stdout);
		free(h);
		rc = 0;
		goto out;
	}
	if (first + 2 < argc) {
		fprintf(stderr, "gangliond: unexpected argument '%s' (options go before the command)\n", argv[first + 2]);
		rc = 2;
		goto out;
	}
	if (strcmp(cmd, "routes") == 0) {
		size_t n;
		const struct gd_route *r = http_routes(&n);
		for (size_t i = 0; i < n; i++)
			printf("%s %s\n", r[i].method, r[i].pattern);
		rc = 0;
		goto out;
	}
	if (strcmp(cmd, "sample-config") == 0) {
		char *s = gn_conf_sample_dup(&config_table);
		fputs(s, stdout);
		free(s);
		rc = 0;
		goto out;
	}
	if (strcmp(cmd, "serve") != 0 && strcmp(cmd, "migrate") != 0) {
		fprintf(stderr, "gangliond: unknown command '%s' (see --help)\n", cmd);
		rc = 2;
		goto out;
	}
	if (check_config(&gd.cfg, &err) || config_parse_listen(&addr, gd.cfg.listen, &err) ||
	    gn_log_open(gd.cfg.log_file, &err)) {
		fprintf(stderr, "gangliond: %s\n", err.msg);
		rc = 2;
		goto out;
	}
	apply_live_settings(&gd.cfg);
	if (mkdir_p(gd.cfg.data_dir, 0700) < 0) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"cannot create data-dir %s: %s\"", gd.cfg.data_dir,
		       strerror(errno));
		goto out;
	}

	/* One gangliond per data dir: a second one would share (and on exit stop) the private cluster. */
	char *lockpath = gn_asprintf("%s/gangliond.lock", gd.cfg.data_dir);
	lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"data-dir %s is in use by another gangliond (lock %s): "
				     "give each replica its own data-dir\"",
		       gd.cfg.data_dir, lockpath);
		free(lockpath);
		goto out;
	}
	free(lockpath);

	/* Signals are taken synchronously by the main thread; worker threads inherit the mask. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (!*gd.cfg.database_url) {
		if (pgcluster_start(&pg, &conninfo, gd.cfg.data_dir, gd.cfg.pg_bindir, gd.cfg.pg_user, &err)) {
			gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
			goto out;
		}
	} else {
		conninfo = gn_strdup(gd.cfg.database_url);
	}
	if (db_pool_new(&gd.pool, conninfo, (int)gd.cfg.db_pool_size, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	db_conn *c = db_acquire(gd.pool);
	int mrc = migrate_run(c, &err);
	if (!mrc && strcmp(cmd, "serve") == 0 && !(mrc = auth_bootstrap_admin(c, gd.cfg.data_dir, &err)) &&
	    !(mrc = artifacts_init(gd.cfg.data_dir, &err)))
		mrc = tufrepo_init(c, &err);
	db_release(gd.pool, c);
	if (mrc) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (strcmp(cmd, "migrate") == 0) {
		gn_log(GN_LOG_INFO, "event=migrated");
		rc = 0;
		goto out;
	}
	if (checkin_cache_start(conninfo, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	if (http_start((struct sockaddr *)&addr, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		goto out;
	}
	gn_log(GN_LOG_INFO, "event=listening addr=%s threads=%lld db_pool=%lld database=%s", gd.cfg.listen,
	       (long long)gd.cfg.threads, (long long)gd.cfg.db_pool_size, pg ? "private" : "external");
	rc = serve_loop(argc, argv, &set);
	http_stop(gd.cfg.shutdown_grace);
	gn_log(GN_LOG_INFO, "event=stopped");
out:
	checkin_cache_stop();
	db_pool_free(gd.pool);
	gd.pool = NULL;
	pgcluster_stop(pg);
	if (lockfd >= 0)
		close(lockfd);
	free(conninfo);
	gn_conf_cleanup(&config_table, &gd.cfg);
	if (gn_log_open(NULL, &err)) { /* nothing left to report to */ }
	return rc;
}
