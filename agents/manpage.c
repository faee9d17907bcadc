/* ganglion-agent(8), ganglion-agent.conf(5) and the agent's bash completion, written from its
 * option table and the usage text that --help prints, so they cannot drift from the program. */
#include "manpage.h"

#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "completion.h"
#include "man.h"

static const char see_also[] = "`ganglion`(1), `gangliond`(8), `ganglion-agent.conf`(5)";

static void program_page(gn_buf *b, const char *usage)
{
	gn_man_header(b, "ganglion-agent", "8", "the Ganglion edge agent: verified model updates and local inference");
	gn_man_synopsis(b, usage);
	gn_man_section(b, "DESCRIPTION");
	gn_man_text(b, "`ganglion-agent` runs on every edge device managed by `gangliond`(8). Enrolled once "
		       "with an enrollment token, it checks in with the server and, for each model the director "
		       "names for this device (several models, one version of each), installs that version only "
		       "when the image repository signed the same length and SHA-256 (TUF), downloads it "
		       "resumably, self-tests it on the release's sample, and swaps it in without dropping a "
		       "request; a model the director no longer names is unloaded. A failed install is tried "
		       "again with exponential backoff (up to `backoff-max`). It keeps serving what it has when "
		       "the server is unreachable.\n"
		       "\n"
		       "Local applications call the models over HTTP on a Unix socket (`socket-path`):\n"
		       "\n"
		       "  POST /v1/models/NAME/infer     {\"inputs\":{\"x\":[...]}} -> {\"outputs\":{...}}\n"
		       "  GET  /v1/models                what runs: name, version, digest, target, per model\n"
		       "  POST /v1/models/NAME/rollback  swap that model's previous version back in\n"
		       "  POST /v1/rollback              the same, on a device that runs one model\n"
		       "  GET  /healthz                  alive, and whether a model is serving\n"
		       "  GET  /metrics                  Prometheus text: counters, latency, drift of the open window\n"
		       "\n"
		       "Models run in an inference-runtime plugin (`runtime-plugin`); the OpenCV DNN plugin runs "
		       "ONNX models on the CPU or on OpenCL devices (`runtime-target`).");
	gn_man_section(b, "COMMANDS");
	gn_man_usage_commands(b, usage);
	gn_man_section(b, "OPTIONS");
	gn_man_text(b, "Options go before the command. Every option is also a `key = value` line of the config "
		       "file (see `ganglion-agent.conf`(5)) and a GANGLION_AGENT_KEY environment variable "
		       "(dashes become underscores). Precedence: flags, then the environment, then the file, "
		       "then the defaults. Unknown keys are errors.");
	gn_man_conf_flags(b, &agent_config_table);
	gn_man_section(b, "SIGNALS");
	gn_man_item(b, "SIGTERM", NULL, "Stop serving, finish the requests in flight, and exit 0.");
	gn_man_section(b, "EXIT STATUS");
	gn_man_item(b, "0", NULL, "Success.");
	gn_man_item(b, "1", NULL, "The command failed (enrollment refused, server unreachable, no identity).");
	gn_man_item(b, "2", NULL, "Bad command line or configuration.");
	gn_man_section(b, "FILES");
	gn_man_item(b, "/etc/ganglion-agent/ganglion-agent.conf", NULL,
		    "The configuration the packaged service reads (`ganglion-agent --config "
		    "/etc/ganglion-agent/ganglion-agent.conf run`).");
	gn_man_item(b, "/var/lib/ganglion-agent", NULL,
		    "The default data dir: identity/ (the device key and id), trust/ (pinned TUF metadata), "
		    "downloads/, models/ (verified model files; the current and the previous one), "
		    "state.json. It is the device's identity: keep it across upgrades and reinstalls.");
	gn_man_item(b, "/run/ganglion-agent/infer.sock", NULL,
		    "The default inference socket; the packaged service lets members of the ganglion-agent "
		    "group use it.");
	gn_man_section(b, "EXAMPLES");
	gn_man_text(b, "Enroll once, as the user the service runs as, pinning the repositories' root metadata "
		       "obtained out of band:\n"
		       "\n"
		       "  runuser -u ganglion-agent -- ganglion-agent \\\n"
		       "      --config /etc/ganglion-agent/ganglion-agent.conf enroll --token gne_... \\\n"
		       "      --trusted-root image-root.json --trusted-director-root director-root.json\n"
		       "\n"
		       "Then start the service and ask the model:\n"
		       "\n"
		       "  systemctl enable --now ganglion-agent\n"
		       "  curl --unix-socket /run/ganglion-agent/infer.sock http://agent/v1/models/det/infer \\\n"
		       "      -H 'Content-Type: application/json' -d '{\"inputs\":{\"x\":[0.5,-1.25,2.0,0.75]}}'");
	gn_man_section(b, "SEE ALSO");
	gn_man_text(b, see_also);
}

static void config_page(gn_buf *b)
{
	gn_man_header(b, "ganglion-agent.conf", "5", "configuration file of ganglion-agent");
	gn_man_section(b, "SYNOPSIS");
	gn_man_text(b, "/etc/ganglion-agent/ganglion-agent.conf");
	gn_man_section(b, "DESCRIPTION");
	gn_man_text(b, "`ganglion-agent`(8) reads the file named by `--config` (or GANGLION_AGENT_CONFIG). Each "
		       "line is `key = value`; blank lines and lines starting with # or ; are ignored, and a "
		       "value may be quoted with double quotes. Unknown keys are errors. Every key is also a "
		       "command-line flag and an environment variable, which take precedence over the file. "
		       "The agent reads it at start.");
	gn_man_section(b, "KEYS");
	gn_man_conf_keys(b, &agent_config_table);
	gn_man_section(b, "EXAMPLE");
	gn_man_text(b, "  server-url = https://ganglion.example\n"
		       "  ca-file = /etc/ssl/certs/ganglion-ca.pem\n"
		       "  runtime-target = opencl\n"
		       "\n"
		       "`ganglion-agent sample-config` prints every key with its default.");
	gn_man_section(b, "SEE ALSO");
	gn_man_text(b, see_also);
}

int manpage_print(FILE *f, const char *usage, const char *what)
{
	gn_buf b;
	gn_buf_init(&b);
	if (strcmp(what, "completion") == 0) {
		gn_completion *c = gn_completion_new("ganglion-agent");
		gn_completion_usage(c, usage);
		gn_completion_conf(c, &agent_config_table);
		char *s = gn_completion_bash_dup(c);
		gn_buf_puts(&b, s);
		free(s);
		gn_completion_free(c);
	} else if (strcmp(what, "man-config") == 0) {
		config_page(&b);
	} else {
		program_page(&b, usage);
	}
	fputs(b.data, f);
	gn_buf_cleanup(&b);
	return 0;
}
