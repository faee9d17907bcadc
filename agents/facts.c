/* What this device has, as the agent reports it at check-in: OS, architecture, memory, and its
 * runtime (name, version, targets with their memory). The runtime is loaded only when a model needs
 * it, so until then the facts come from a probe: the agent runs itself once as
 * `ganglion-agent runtime-info` in a child process, whose plugin and inference engine go away with
 * it and cost this process no memory. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "json.h"
#include "log.h"

extern char **environ;

#define PROBE_MAX_BYTES 65536
#define PROBE_TIMEOUT_MS 60000

/* Reads the child's stdout into buf until EOF, the byte limit or the deadline. */
static int read_child(gn_buf *buf, int fd, gn_err *err)
{
	int64_t deadline = gn_mono_ns() / 1000000 + PROBE_TIMEOUT_MS;
	char chunk[4096];
	for (;;) {
		int64_t left = deadline - gn_mono_ns() / 1000000;
		struct pollfd p = {fd, POLLIN, 0};
		if (left <= 0)
			return gn_err_set(err, GN_ERROR, "runtime-info took longer than %d s", PROBE_TIMEOUT_MS / 1000);
		int r = poll(&p, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return gn_err_set(err, GN_ERROR, "poll: %s", strerror(errno));
		if (r == 0)
			continue;
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return gn_err_set(err, GN_ERROR, "read: %s", strerror(errno));
		if (n == 0)
			return 0;
		if (buf->len + (size_t)n > PROBE_MAX_BYTES)
			return gn_err_set(err, GN_ERROR, "runtime-info wrote more than %d bytes", PROBE_MAX_BYTES);
		gn_buf_append(buf, chunk, (size_t)n);
	}
}

/* Runs `ganglion-agent SETTINGS runtime-info` and parses what it prints into *out (new). */
static int probe(json_t **out, struct agent *a, gn_err *err)
{
	int fds[2], status = 0, error;
	pid_t pid = -1;
	gn_buf buf;
	posix_spawn_file_actions_t fa;
	gn_buf_init(&buf);
	char **argv = gn_calloc((size_t)a->settings_argc + 5, sizeof(char *));
	argv[0] = "ganglion-agent";
	for (int i = 0; i < a->settings_argc; i++)
		argv[i + 1] = a->settings_argv[i];
	argv[a->settings_argc + 1] = "--log-level"; /* its news is the agent's; only trouble is logged */
	argv[a->settings_argc + 2] = "warn";
	argv[a->settings_argc + 3] = "runtime-info";
	/* Close-on-exec: a child another thread spawns meanwhile must not hold the write end (the
	 * probe would wait for its end of file until the timeout). The child's stdout is a dup2, which
	 * drops the flag. */
	if (pipe2(fds, O_CLOEXEC) != 0) {
		free(argv);
		return gn_err_set(err, GN_ERROR, "pipe: %s", strerror(errno));
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	error = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	free(argv);
	if (error) {
		close(fds[0]);
		return gn_err_set(err, GN_ERROR, "cannot run runtime-info: %s", strerror(error));
	}
	error = read_child(&buf, fds[0], err);
	close(fds[0]);
	if (error)
		kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!error && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
		error = gn_err_set(err, GN_ERROR, "runtime-info failed (status %d; its reason is in the log)", status);
	if (!error && (gn_json_parse(out, buf.data ? buf.data : "", buf.len, 8, err) || !json_is_object(*out)))
		error = gn_err_set(err, GN_ERROR, "runtime-info printed no JSON object");
	gn_buf_cleanup(&buf);
	return error;
}

/* The runtime's facts: live when it is loaded, else from the probe (made once per process). */
static json_t *runtime_facts(struct agent *a)
{
	static pthread_mutex_t probing = PTHREAD_MUTEX_INITIALIZER;
	static bool probed; /* one agent per process */
	gn_err err;
	if (a->rt) {
		json_t *live = models_runtime_facts(a);
		json_object_set_new(live, "loaded", json_true());
		return live;
	}
	pthread_mutex_lock(&probing);
	if (!probed && a->settings_argv) {
		probed = true;
		json_t *p = NULL;
		if (probe(&p, a, &err))
			gn_log(GN_LOG_WARN, "event=runtime_probe_failed plugin=%s msg=\"%s\"", a->cfg.runtime_plugin,
			       err.msg);
		else
			a->runtime_probe = p;
	}
	pthread_mutex_unlock(&probing);
	json_t *f = a->runtime_probe ? json_deep_copy(a->runtime_probe) : models_runtime_facts(a);
	json_object_set_new(f, "loaded", json_false());
	return f;
}

json_t *facts_collect(struct agent *a)
{
	struct utsname u;
	struct sysinfo si;
	json_t *f = json_pack("{s:s}", "agent_version", AGENT_VERSION);
	if (uname(&u) == 0) {
		json_object_set_new(f, "os", json_sprintf("%s %s", u.sysname, u.release));
		json_object_set_new(f, "arch", json_string(u.machine));
		json_object_set_new(f, "hostname", json_string(u.nodename));
	}
	if (sysinfo(&si) == 0)
		json_object_set_new(f, "ram_bytes", json_integer((json_int_t)((uint64_t)si.totalram * si.mem_unit)));
	json_object_set_new(f, "runtime", runtime_facts(a));
	return f;
}

int facts_runtime_info(struct agent *a)
{
	gn_err err;
	if (models_open_runtime(a, &err)) {
		fprintf(stderr, "ganglion-agent runtime-info: %s\n", err.msg);
		return 1;
	}
	json_t *f = models_runtime_facts(a);
	char *s = json_dumps(f, JSON_INDENT(2) | JSON_SORT_KEYS);
	puts(s);
	free(s);
	json_decref(f);
	return fflush(stdout) == 0 ? 0 : 1;
}
