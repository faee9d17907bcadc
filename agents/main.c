/* ganglion-agent: enroll once, then run: serve the current model on a local socket, check in,
 * install verified updates with a zero-downtime swap, keep serving whatever happens upstream. */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"
#include "fileio.h"
#include "json.h"
#include "log.h"
#include "manpage.h"
#include "tuf.h"
#include "tufclient.h"
#include "version.h"

extern char **environ;

/* Most bytes of a file that --token @FILE names. */
#define TOKEN_FILE_MAX 4096

static const char usage[] =
	"usage: ganglion-agent [OPTIONS] COMMAND\n"
	"\n"
	"Commands:\n"
	"  enroll --token TOKEN|@FILE [--name NAME] [--trusted-root FILE] [--trusted-director-root FILE]\n"
	"                 create this device's key, enroll it, and pin the repositories' root metadata\n"
	"                 (given out of band with --trusted-root*, or trusted on first use)\n"
	"  run            serve the current model and keep it up to date (the default)\n"
	"  status         print what this device runs, its last update attempt and its last failed one\n"
	"  runtime-info   load the runtime plugin and print what it reports (name, version, targets) as JSON\n"
	"  tuf-client ... a TUF client over any static TUF repository, for interop tests\n"
	"                 (ganglion-agent tuf-client --help)\n"
	"  sample-config  print a config file with every key and its default\n"
	"  man            print the manual page ganglion-agent(8) in roff (man -l -)\n"
	"  man-config     print the manual page ganglion-agent.conf(5) in roff\n"
	"  completion     print the bash completion script\n"
	"\n"
	"'ganglion-agent COMMAND --help' describes one command.";

/* Stores a repository's first trusted root: a file given out of band, or the server's current one. */
static int pin_root(struct agent *a, const char *repo, const char *file, gn_err *err)
{
	char *bytes = NULL, path[64], rel[64];
	size_t len = 0;
	json_t *root = NULL;
	int rc;
	if (file) {
		json_error_t je;
		json_t *j = json_load_file(file, 0, &je);
		if (!j)
			return gn_err_set(err, GN_EINVAL, "cannot read %s: %s", file, je.text);
		bytes = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		len = strlen(bytes);
		json_decref(j);
	} else {
		snprintf(path, sizeof(path), "/v1/tuf/%s/root.json", repo);
		if ((rc = client_get(&bytes, &len, a, path, GN_TUF_MAX_METADATA, err)))
			return rc;
		gn_log(GN_LOG_WARN,
		       "event=trust_on_first_use repo=%s note=\"root metadata taken from the server; pin it "
		       "with --trusted-root in production\"",
		       repo);
	}
	if (!(rc = gn_tufc_parse(&root, bytes, len, err)) &&
	    !(rc = gn_tufc_check_role(root, "root", root, NULL, gn_now(), err))) {
		snprintf(rel, sizeof(rel), "trust/%s/root.json", repo);
		rc = state_write_bytes(a, rel, bytes, len, err);
	}
	json_decref(root);
	free(bytes);
	return rc;
}

static int enroll(struct agent *a, const char *token, const char *name, const char *img, const char *dir);

static int cmd_enroll(struct agent *a, int argc, char **argv)
{
	const char *token = NULL, *name = NULL, *img = NULL, *dir = NULL;
	gn_err err;
	for (int i = 0; i < argc; i++) {
		const char **dst = strcmp(argv[i], "--token") == 0                   ? &token
				   : strcmp(argv[i], "--name") == 0                  ? &name
				   : strcmp(argv[i], "--trusted-root") == 0          ? &img
				   : strcmp(argv[i], "--trusted-director-root") == 0 ? &dir
										     : NULL;
		if (!dst || i + 1 >= argc) {
			fprintf(stderr, "ganglion-agent enroll: %s '%s' (see 'ganglion-agent enroll --help')\n",
				dst ? "no value after" : "unexpected", argv[i]);
			return 2;
		}
		*dst = argv[++i];
	}
	if (!token) {
		fprintf(stderr, "ganglion-agent enroll: --token is required\n");
		return 2;
	}
	/* --token @FILE keeps the secret out of the process list, as the CLI's does. */
	char *from_file = NULL;
	if (token[0] == '@') {
		if (gn_secret_file_read(&from_file, token + 1, TOKEN_FILE_MAX, &err)) {
			fprintf(stderr, "ganglion-agent enroll: --token: %s\n", err.msg);
			return 2;
		}
		token = from_file;
	}
	int rc = enroll(a, token, name, img, dir);
	free(from_file);
	return rc;
}

/* Enrolls with token (and the roots given out of band, checked before the token is spent). */
static int enroll(struct agent *a, const char *token, const char *name, const char *img, const char *dir)
{
	gn_err err;
	json_t *existing = NULL;
	if (state_read_json(&existing, a, "identity/device.json", &err) == 0) {
		json_decref(existing);
		fprintf(stderr,
			"ganglion-agent: this device is enrolled already (%s/identity); remove it to enroll again\n",
			a->cfg.data_dir);
		return 1;
	}
	/* Check the roots given out of band before the token is spent on enrollment. */
	const char *files[] = {img, dir};
	for (int i = 0; i < 2; i++) {
		json_t *root = NULL;
		json_error_t je;
		if (!files[i])
			continue;
		json_t *j = json_load_file(files[i], 0, &je);
		char *bytes = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		int bad = !bytes || gn_tufc_parse(&root, bytes, strlen(bytes), &err) ||
			  gn_tufc_check_role(root, "root", root, NULL, gn_now(), &err);
		if (!j)
			snprintf(err.msg, sizeof(err.msg), "cannot read %s: %s", files[i], je.text);
		json_decref(j);
		json_decref(root);
		free(bytes);
		if (bad) {
			fprintf(stderr, "ganglion-agent: %s is not a usable root: %s\n", files[i], err.msg);
			return 2;
		}
	}
	if (state_mkdirs(a, &err) || models_open_runtime(a, &err) || client_enroll(a, token, name, &err) ||
	    pin_root(a, "image", img, &err) || pin_root(a, "director", dir, &err)) {
		fprintf(stderr, "ganglion-agent: enrollment failed: %s\n", err.msg);
		return 1;
	}
	printf("enrolled as device %s\n", a->device_id);
	return 0;
}

/* Prints one update attempt as "STATE MODEL VERSION at TIME: DETAIL". */
static void print_operation(const char *label, const json_t *op)
{
	const char *detail = gn_json_str(op, "detail");
	printf("%s: %s %s %s at %s%s%s\n", label, gn_json_str(op, "state"), gn_json_str(op, "model"),
	       gn_json_str(op, "version"), gn_json_str(op, "at"), detail ? ": " : "", detail ? detail : "");
}

static int cmd_status(struct agent *a, int argc, char **argv)
{
	json_t *state = NULL, *op = NULL;
	gn_err err;
	(void)argc, (void)argv;
	if (state_load_identity(a, &err)) {
		fprintf(stderr, "ganglion-agent: %s\n", err.msg);
		return 1;
	}
	printf("device: %s\n", a->device_id);
	if (state_read_json(&state, a, "state.json", &err) == 0) {
		char *s = json_dumps(state, JSON_INDENT(2) | JSON_SORT_KEYS);
		printf("%s\n", s);
		free(s);
		json_decref(state);
	} else {
		printf("no model installed yet\n");
	}
	/* The agent records these as they happen (update.c); a later success does not hide a failure. */
	static const char *const files[] = {"last_operation.json", "last_failure.json"};
	static const char *const labels[] = {"last update attempt", "last failed attempt"};
	for (size_t i = 0; i < GN_ARRAY_LEN(files); i++) {
		if (state_read_json(&op, a, files[i], &err) == 0)
			print_operation(labels[i], op);
		else if (i == 1)
			printf("%s: none\n", labels[i]);
		json_decref(op);
		op = NULL;
	}
	return 0;
}

/* Waits for SIGTERM/SIGINT (blocked in every thread) and tells the main loop and any transfer
 * in progress to stop. */
static void *signal_thread(void *ud)
{
	struct agent *a = ud;
	sigset_t set;
	int sig;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigwait(&set, &sig) == 0)
		gn_log(GN_LOG_INFO, "event=shutdown signal=%s", sig == SIGTERM ? "TERM" : "INT");
	pthread_mutex_lock(&a->wake_lock);
	atomic_store(&a->stopping, true);
	pthread_cond_broadcast(&a->wake);
	pthread_mutex_unlock(&a->wake_lock);
	return NULL;
}

static int cmd_run(struct agent *a, int argc, char **argv)
{
	gn_err err;
	sigset_t set;
	int64_t poll = 60, backoff = 0;
	unsigned seed = (unsigned)(gn_mono_ns() ^ (uint64_t)getpid());
	(void)argc, (void)argv;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (state_mkdirs(a, &err) || state_load_identity(a, &err) || models_check_runtime(a, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		return 1;
	}
	/* An enrollment that stopped before the roots were stored (server gone): take them now. */
	static const char *const repos[] = {"image", "director"};
	for (int i = 0; i < 2; i++) {
		char rel[64];
		json_t *root = NULL;
		snprintf(rel, sizeof(rel), "trust/%s/root.json", repos[i]);
		if (state_read_json(&root, a, rel, &err) == GN_ENOTFOUND && pin_root(a, repos[i], NULL, &err))
			gn_log(GN_LOG_WARN, "event=root_missing repo=%s msg=\"%s\" note=\"restart the agent to retry\"",
			       repos[i], err.msg);
		json_decref(root);
	}
	if (agent_telemetry_start(a, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		return 1;
	}
	/* Serve what was installed before talking to anyone: the network may be down. */
	if (update_restore(a, &err))
		gn_log(GN_LOG_ERROR, "event=restore_failed msg=\"%s\"", err.msg);
	if (serve_start(a, &err)) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"%s\"", err.msg);
		agent_telemetry_stop(a);
		return 1;
	}
	gn_log(GN_LOG_INFO, "event=running device=%s server=%s target=%s", a->device_id, a->cfg.server_url,
	       a->cfg.runtime_target);
	pthread_t sigt;
	if (pthread_create(&sigt, NULL, signal_thread, a) != 0) {
		gn_log(GN_LOG_ERROR, "event=startup_failed msg=\"cannot start the signal thread\"");
		serve_stop(a);
		agent_telemetry_stop(a);
		return 1;
	}
	while (!atomic_load(&a->stopping)) {
		int64_t wait;
		pthread_mutex_lock(&a->update_lock);
		int urc = update_once(a, &poll, &err);
		pthread_mutex_unlock(&a->update_lock);
		agent_telemetry_upload(a);
		if (urc) {
			/* Unreachable or refusing: keep serving, back off exponentially up to the cap. */
			backoff = backoff ? backoff * 2 : a->cfg.poll_min;
			if (backoff > a->cfg.backoff_max)
				backoff = a->cfg.backoff_max;
			gn_log(GN_LOG_WARN, "event=checkin_failed retry_s=%lld msg=\"%s\"", (long long)backoff,
			       err.msg);
			wait = backoff;
		} else {
			backoff = 0;
			wait = poll < a->cfg.poll_min   ? a->cfg.poll_min
			       : poll > a->cfg.poll_max ? a->cfg.poll_max
							: poll;
			pthread_mutex_lock(&a->update_lock);
			wait = update_retry_wait(a, wait); /* a failed install due sooner */
			pthread_mutex_unlock(&a->update_lock);
		}
		/* ±10 % jitter so a fleet restarted together does not check in together. */
		int64_t ms = wait * 1000;
		ms += (int64_t)(rand_r(&seed) % (unsigned)(ms / 5 + 1)) - ms / 10;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(ms / 1000);
		ts.tv_nsec += (long)(ms % 1000) * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&a->wake_lock);
		while (!atomic_load(&a->stopping) && pthread_cond_timedwait(&a->wake, &a->wake_lock, &ts) == 0)
			;
		pthread_mutex_unlock(&a->wake_lock);
	}
	pthread_join(sigt, NULL);
	serve_stop(a);
	agent_telemetry_stop(a);
	models_release_all(a);
	return 0;
}

/* Sets up an empty agent: locks and the wake-up condition; the config comes later. */
static void agent_init(struct agent *a)
{
	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	pthread_mutex_init(&a->wake_lock, NULL);
	pthread_cond_init(&a->wake, NULL);
	pthread_cond_init(&a->resumed, NULL);
	pthread_mutex_init(&a->update_lock, NULL);
}

/* Releases what the agent holds; the endpoint is stopped and the model released already. */
static void agent_cleanup(struct agent *a)
{
	gn_ed25519_key_free(a->key);
	json_decref(a->last_op);
	json_decref(a->runtime_probe);
	gn_conf_cleanup(&agent_config_table, &a->cfg);
	pthread_mutex_destroy(&a->update_lock);
	pthread_cond_destroy(&a->wake);
	pthread_cond_destroy(&a->resumed);
	pthread_mutex_destroy(&a->wake_lock);
	pthread_mutex_destroy(&a->lock);
}

static int cmd_sample_config(struct agent *a, int argc, char **argv)
{
	char *s = gn_conf_sample_dup(&agent_config_table);
	(void)a, (void)argc, (void)argv;
	fputs(s, stdout);
	free(s);
	return 0;
}

static int cmd_runtime_info(struct agent *a, int argc, char **argv)
{
	(void)argc, (void)argv;
	return facts_runtime_info(a);
}

static int cmd_tuf_client(struct agent *a, int argc, char **argv)
{
	return tuf_client_cmd_main(&a->cfg, argc, argv);
}

static int cmd_man(struct agent *a, int argc, char **argv)
{
	(void)a, (void)argc, (void)argv;
	return manpage_print(stdout, usage, "man");
}

static int cmd_man_config(struct agent *a, int argc, char **argv)
{
	(void)a, (void)argc, (void)argv;
	return manpage_print(stdout, usage, "man-config");
}

static int cmd_completion(struct agent *a, int argc, char **argv)
{
	(void)a, (void)argc, (void)argv;
	return manpage_print(stdout, usage, "completion");
}

/* The commands: what `COMMAND --help` says, and what runs them. Only enroll and tuf-client take
 * arguments; tuf-client reads all of its own, --help included (help is NULL). */
static const struct agent_cmd {
	const char *name, *args, *help;
	int (*run)(struct agent *a, int argc, char **argv);
} cmds[] = {
	{"enroll", " --token TOKEN|@FILE [--name NAME] [--trusted-root FILE] [--trusted-director-root FILE]",
	 "Creates this device's key pair, enrolls it with the server (--server-url) using an enrollment token,\n"
	 "and pins the root metadata of the image repository and of the director: the files given out of band\n"
	 "(--trusted-root, --trusted-director-root), else the server's current ones (trust on first use).\n"
	 "--token @FILE reads the token from FILE, so that it does not show in the process list. Each root is\n"
	 "checked before the token is spent.",
	 cmd_enroll},
	{"run", "",
	 "Serves the installed model on the local socket at once, then checks in with the server and installs\n"
	 "what its signed desired state names (verified, self-tested, swapped without a gap), until SIGTERM.",
	 cmd_run},
	{"status", "",
	 "Prints this device's id, what it runs (and the version it keeps to roll back to), its last update\n"
	 "attempt and its last failed one, from the data dir; it does not contact the server.",
	 cmd_status},
	{"runtime-info", "",
	 "Loads the runtime plugin (--runtime-plugin, --runtime-options) and prints what it reports as JSON:\n"
	 "its name, version and targets with their memory. The agent runs it once in a child process to report\n"
	 "these facts at check-in before any model needs the plugin in its own memory.",
	 cmd_runtime_info},
	{"tuf-client", NULL, NULL, cmd_tuf_client},
	{"sample-config", "", "Prints a config file with every key and its default.", cmd_sample_config},
	{"man", "", "Prints the manual page ganglion-agent(8) in roff (man -l -).", cmd_man},
	{"man-config", "", "Prints the manual page ganglion-agent.conf(5) in roff.", cmd_man_config},
	{"completion", "", "Prints the bash completion script.", cmd_completion},
};

/* Handles --help and --version after a command, and refuses other arguments where a command takes
 * none (settings go before the command); returns an exit status, or -1 to run the command. */
static int command_args(const struct agent_cmd *c, int argc, char **argv)
{
	if (!c->help)
		return -1;
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			printf("usage: ganglion-agent [OPTIONS] %s%s\n\n%s\n\nOPTIONS (settings such as --server-url and "
			       "--data-dir, before the command): ganglion-agent --help\n",
			       c->name, c->args, c->help);
			return 0;
		}
		if (strcmp(argv[i], "--version") == 0) {
			printf("ganglion-agent %s\n", gn_version());
			return 0;
		}
	}
	if (argc > 0 && c->run != cmd_enroll) {
		fprintf(stderr,
			"ganglion-agent %s: unexpected argument '%s' (settings go before the command: "
			"ganglion-agent --data-dir DIR %s)\n",
			c->name, argv[0], c->name);
		return 2;
	}
	return -1;
}

/* Runs the command named on the command line; returns the exit status. */
static int run_command(struct agent *a, const char *cmd, int argc, char **argv)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(cmds); i++) {
		if (strcmp(cmds[i].name, cmd) != 0)
			continue;
		int rc = command_args(&cmds[i], argc, argv);
		return rc >= 0 ? rc : cmds[i].run(a, argc, argv);
	}
	fprintf(stderr, "ganglion-agent: unknown command '%s' (see --help)\n", cmd);
	return 2;
}

int main(int argc, char **argv)
{
	struct agent a;
	gn_err err;
	int first = 0, rc = 2;
	bool help = false;
	enum gn_log_level lvl;

	if (gn_version_wanted(&agent_config_table, argc - 1, argv + 1)) {
		printf("ganglion-agent %s\n", gn_version());
		return 0;
	}
	agent_init(&a);
	if (gn_conf_load_all(&first, &help, &agent_config_table, &a.cfg, argc - 1, argv + 1, environ, &err) ||
	    (!help && agent_config_check(&a.cfg, &err))) {
		fprintf(stderr, "ganglion-agent: %s\n", err.msg);
		goto out;
	}
	if (help) {
		char *h = gn_conf_help_dup(&agent_config_table, usage);
		fputs(h, stdout);
		free(h);
		rc = 0;
		goto out;
	}
	if (gn_log_level_parse(&lvl, a.cfg.log_level) == 0) /* checked by agent_config_check */
		gn_log_set_level(lvl);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	a.settings_argv = argv + 1;
	a.settings_argc = first;
	rc = run_command(&a, first + 1 < argc ? argv[first + 1] : "run", argc - first - 2, argv + first + 2);
	curl_global_cleanup();
out:
	agent_cleanup(&a);
	return rc;
}
