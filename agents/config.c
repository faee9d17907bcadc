/* The ganglion-agent option table: flags, GANGLION_AGENT_* variables and the INI file. */
#include <stddef.h>
#include <string.h>

#include "agent.h"
#include "log.h"

#define OPT(k, t, f, d, r, mn, mx, a, h)                                   \
	{                                                                  \
		k, t, offsetof(struct agent_config, f), d, r, mn, mx, a, h \
	}

static const gn_conf_opt opts[] = {
	OPT("config", GN_CONF_STRING, config, NULL, false, 0, 0, "FILE", "read settings from this INI file"),
	OPT("server-url", GN_CONF_STRING, server_url, "http://127.0.0.1:7700", false, 0, 0, "URL",
	    "gangliond's base URL"),
	OPT("ca-file", GN_CONF_STRING, ca_file, "", false, 0, 0, "FILE",
	    "CA bundle (PEM) the https server-url's certificate must chain to; empty: the system's CAs. The "
	    "server is always verified"),
	OPT("pinned-pubkey", GN_CONF_STRING, pinned_pubkey, "", false, 0, 0, "PIN",
	    "accept only this server key (sha256//BASE64, or a PEM/DER public key file)"),
	OPT("client-cert", GN_CONF_STRING, client_cert, "", false, 0, 0, "FILE",
	    "PEM certificate the agent presents to an https server-url that asks for one (mTLS), with client-key"),
	OPT("client-key", GN_CONF_STRING, client_key, "", false, 0, 0, "FILE",
	    "PEM private key (unencrypted) of client-cert"),
	OPT("data-dir", GN_CONF_STRING, data_dir, "/var/lib/ganglion-agent", false, 0, 0, "DIR",
	    "identity, trusted metadata, downloads and models"),
	OPT("runtime-plugin", GN_CONF_STRING, runtime_plugin, PKGLIBDIR "/runtimes/ganglion-runtime-opencv.so", false,
	    0, 0, "FILE", "inference runtime plugin (agents/runtimes/runtime.h)"),
	OPT("runtime-target", GN_CONF_STRING, runtime_target, "cpu", false, 0, 0, "TARGET",
	    "where models run: cpu, opencl, ... (the agent reports what really ran)"),
	OPT("runtime-options", GN_CONF_STRING, runtime_options, "", false, 0, 0, "K=V,...",
	    "options for the runtime plugin, comma-separated (opencv: threads, nets, opencl, log-level; "
	    "onnxruntime: threads, device, log-level); the plugin refuses one it does not know"),
	OPT("socket-path", GN_CONF_STRING, socket_path, "/run/ganglion-agent/infer.sock", false, 0, 0, "PATH",
	    "Unix socket of the local inference endpoint"),
	OPT("log-level", GN_CONF_STRING, log_level, "info", false, 0, 0, "LEVEL", "debug, info, warn or error"),
	OPT("poll-min", GN_CONF_DURATION, poll_min, "5s", false, 1, 86400, "DURATION",
	    "shortest check-in interval, whatever the server says"),
	OPT("poll-max", GN_CONF_DURATION, poll_max, "1h", false, 1, 86400, "DURATION",
	    "longest check-in interval, whatever the server says"),
	OPT("backoff-max", GN_CONF_DURATION, backoff_max, "5m", false, 1, 86400, "DURATION",
	    "cap of the exponential back-off while the server is unreachable, and between attempts of a "
	    "failed install"),
	OPT("download-deadline", GN_CONF_DURATION, download_deadline, "1h", false, 1, 86400 * 7, "DURATION",
	    "a download attempt taking longer is abandoned (and resumed later)"),
	OPT("download-min-rate", GN_CONF_SIZE, download_min_rate, "1K", false, 1, 1LL << 30, "SIZE",
	    "bytes per second below which, for 30 s, a download is abandoned (slow-retrieval attack)"),
	OPT("max-infer-body", GN_CONF_SIZE, max_infer_body, "64M", false, 1024, 1LL << 32, "SIZE",
	    "largest inference request body"),
	OPT("threads", GN_CONF_INT, threads, "2", false, 2, 64, "N",
	    "inference requests run at once, in parallel (each local client connection has its own thread)"),
	OPT("telemetry-window", GN_CONF_DURATION, telemetry_window, "5m", false, 10, 86400, "DURATION",
	    "length of a telemetry window: each model version's counts are summed over it and sent as one report"),
	OPT("telemetry-spool-max", GN_CONF_INT, telemetry_spool_max, "2000", false, 1, 1000000, "N",
	    "reports kept on disk while the server cannot take them; beyond, the oldest are dropped and counted"),
	OPT("telemetry-batch", GN_CONF_INT, telemetry_batch, "100", false, 1, 10000, "N",
	    "reports sent in one request"),
	OPT("test-free-memory-mb", GN_CONF_INT, test_free_memory_mb, "-1", false, -1, 16777216, "MIB",
	    "for tests: the free memory (MiB) the agent assumes on its target before a hot swap instead of "
	    "what the runtime reports; -1 asks the runtime"),
};

const gn_conf_table agent_config_table = {"ganglion-agent", "GANGLION_AGENT_", opts, GN_ARRAY_LEN(opts)};

int agent_config_check(const struct agent_config *c, gn_err *err)
{
	enum gn_log_level level;
	if (strncmp(c->server_url, "http://", 7) != 0 && strncmp(c->server_url, "https://", 8) != 0)
		return gn_err_set(err, GN_EINVAL, "server-url must start with http:// or https://");
	if (!*c->client_cert != !*c->client_key)
		return gn_err_set(err, GN_EINVAL, "client-cert and client-key go together: set both, or neither");
	if (strncmp(c->server_url, "http://", 7) == 0 && (*c->ca_file || *c->pinned_pubkey || *c->client_cert))
		return gn_err_set(err, GN_EINVAL, "%s is set but server-url is plain http://: use an https:// URL",
				  *c->ca_file         ? "ca-file"
				  : *c->pinned_pubkey ? "pinned-pubkey"
						      : "client-cert");
	if (c->poll_min > c->poll_max)
		return gn_err_set(err, GN_EINVAL, "poll-min is larger than poll-max");
	if (!*c->data_dir)
		return gn_err_set(err, GN_EINVAL, "data-dir must be set");
	if (gn_log_level_parse(&level, c->log_level))
		return gn_err_set(err, GN_EINVAL, "log-level must be debug, info, warn or error, not '%s'",
				  c->log_level);
	/* The plugin knows its keys (and says so when it is opened); the form is checked here. */
	for (const char *p = c->runtime_options; *p;) {
		size_t n = strcspn(p, ",");
		const char *eq = memchr(p, '=', n);
		if (!eq || eq == p)
			return gn_err_set(err, GN_EINVAL, "runtime-options: '%.*s' is not key=value",
					  (int)(n > 64 ? 64 : n), p);
		p += n + (p[n] == ',');
	}
	return 0;
}
