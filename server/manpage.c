/* gangliond(8) and gangliond.conf(5), written from the option table and the usage text that
 * --help prints, so the pages cannot drift from the program (`gangliond man`, `man-config`). */
#include "manpage.h"

#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "man.h"

static const char see_also[] = "`ganglion`(1), `ganglion-agent`(8), `gangliond.conf`(5), `ganglion-agent.conf`(5)";

static void program_page(gn_buf *b, const char *usage)
{
	gn_man_header(b, "gangliond", "8", "the Ganglion fleet control plane");
	gn_man_synopsis(b, usage);
	gn_man_section(b, "DESCRIPTION");
	gn_man_text(b, "`gangliond` serves the Ganglion REST API: the inventory of edge devices and their "
		       "enrollment, API tokens and scopes, the audit log, the model registry with "
		       "content-addressed artifacts, and the TUF repositories (an image repository of every "
		       "released model version and a director that signs, per device, what it should run). "
		       "Devices run `ganglion-agent`(8); operators use `ganglion`(1).\n"
		       "\n"
		       "State lives in PostgreSQL. With no `database-url`, gangliond runs its own cluster "
		       "under DATA_DIR/pg (initdb on the first start, a Unix socket inside the data dir, "
		       "stopped on shutdown); it needs the PostgreSQL server binaries. Otherwise it connects to "
		       "the libpq connection string given, for instance the distribution's PostgreSQL service.\n"
		       "\n"
		       "At every start gangliond applies the pending database migrations it carries, under a "
		       "PostgreSQL advisory lock (so replicas sharing one database migrate once), before it "
		       "serves: upgrading the package and restarting the service is the whole upgrade. A "
		       "database that holds a migration this gangliond does not know (it was written by a "
		       "newer version) makes it refuse to start: downgrades are not supported.\n"
		       "\n"
		       "On the first start it writes an admin token to DATA_DIR/admin.token (mode 0600) and the "
		       "TUF root keys to DATA_DIR/keys/; move the root keys offline before production.");
	gn_man_section(b, "COMMANDS");
	gn_man_usage_commands(b, usage);
	gn_man_section(b, "OPTIONS");
	gn_man_text(b, "Every option is also a `key = value` line of the config file (see `gangliond.conf`(5)) "
		       "and a GANGLIOND_KEY environment variable (dashes become underscores). Precedence: flags, "
		       "then the environment, then the file, then the defaults. Unknown keys are errors.");
	gn_man_conf_flags(b, &config_table);
	gn_man_section(b, "SIGNALS");
	gn_man_item(b, "SIGTERM", NULL, "Drain the requests in flight (up to `shutdown-grace`), stop, and exit 0.");
	gn_man_item(b, "SIGINT", NULL, "As SIGTERM.");
	gn_man_item(b, "SIGHUP", NULL,
		    "Re-read the configuration and apply the keys marked \"Reloads on SIGHUP\", if the whole of "
		    "it parses; the log file is reopened.");
	gn_man_section(b, "EXIT STATUS");
	gn_man_item(b, "0", NULL, "Success (after SIGTERM or SIGINT for `serve`).");
	gn_man_item(b, "1", NULL,
		    "The server could not start or failed: database unreachable, a migration failed or is "
		    "unknown, the data dir is in use by another gangliond.");
	gn_man_item(b, "2", NULL, "Bad command line or configuration.");
	gn_man_section(b, "FILES");
	gn_man_item(b, "/etc/ganglion/gangliond.conf", NULL,
		    "The configuration the packaged service reads (`gangliond --config "
		    "/etc/ganglion/gangliond.conf`).");
	gn_man_item(b, "/var/lib/ganglion", NULL,
		    "The default data dir: admin.token, keys/ (TUF root keys), artifacts/ (model files by "
		    "SHA-256), pg/ (the private PostgreSQL cluster), gangliond.lock.");
	gn_man_section(b, "EXAMPLES");
	gn_man_text(b, "Run with a private cluster, or against an existing database:\n"
		       "\n"
		       "  gangliond --data-dir /var/lib/ganglion\n"
		       "  gangliond --database-url 'host=db.example dbname=ganglion user=ganglion'\n"
		       "\n"
		       "Apply the migrations and exit (for instance before starting several replicas):\n"
		       "\n"
		       "  gangliond --config /etc/ganglion/gangliond.conf migrate");
	gn_man_section(b, "SEE ALSO");
	gn_man_text(b, see_also);
}

static void config_page(gn_buf *b)
{
	gn_man_header(b, "gangliond.conf", "5", "configuration file of gangliond");
	gn_man_section(b, "SYNOPSIS");
	gn_man_text(b, "/etc/ganglion/gangliond.conf");
	gn_man_section(b, "DESCRIPTION");
	gn_man_text(b, "`gangliond`(8) reads the file named by `--config` (or GANGLIOND_CONFIG). Each line is "
		       "`key = value`; blank lines and lines starting with # or ; are ignored, and a value may "
		       "be quoted with double quotes. Unknown keys are errors. Every key is also a command-line "
		       "flag and an environment variable, which take precedence over the file.\n"
		       "\n"
		       "On SIGHUP gangliond reads the file again and, if all of it parses, applies the keys "
		       "marked \"Reloads on SIGHUP\"; the others take effect at the next start.\n"
		       "\n"
		       "The file may hold a database password (in `database-url`): the package installs it "
		       "readable by root and the ganglion group only.");
	gn_man_section(b, "KEYS");
	gn_man_conf_keys(b, &config_table);
	gn_man_section(b, "EXAMPLE");
	gn_man_text(b, "Use the distribution's PostgreSQL service instead of a private cluster:\n"
		       "\n"
		       "  listen = 0.0.0.0:7700\n"
		       "  database-url = host=/run/postgresql dbname=ganglion user=ganglion\n"
		       "\n"
		       "`gangliond sample-config` prints every key with its default.");
	gn_man_section(b, "SEE ALSO");
	gn_man_text(b, see_also);
}

int manpage_print(FILE *f, const char *usage, const char *what)
{
	gn_buf b;
	gn_buf_init(&b);
	if (strcmp(what, "man-config") == 0)
		config_page(&b);
	else
		program_page(&b, usage);
	fputs(b.data, f);
	gn_buf_cleanup(&b);
	return 0;
}
