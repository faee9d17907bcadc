/* Runs a private PostgreSQL cluster for single-node installs and trials. */
#include "pgcluster.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"

struct pgcluster {
	char *bindir;
	char *pgdir;   /* DATA_DIR/pg */
	char *datadir; /* DATA_DIR/pg/data */
	char *sockdir; /* DATA_DIR/pg/run */
	char *logfile; /* DATA_DIR/pg/postgres.log */
	uid_t uid;
	gid_t gid;
	bool drop_privileges;
};

static bool is_exec(const char *dir, const char *prog)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, prog);
	return access(path, X_OK) == 0;
}

/* Finds the newest /usr/lib/postgresql/N/bin holding initdb (Debian's layout), else PATH. */
static char *find_bindir(void)
{
	int best = -1;
	DIR *d = opendir("/usr/lib/postgresql");
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			char dir[512];
			int v = atoi(e->d_name);
			snprintf(dir, sizeof(dir), "/usr/lib/postgresql/%s/bin", e->d_name);
			if (v > best && is_exec(dir, "initdb") && is_exec(dir, "pg_ctl"))
				best = v;
		}
		closedir(d);
	}
	if (best >= 0)
		return gn_asprintf("/usr/lib/postgresql/%d/bin", best);
	const char *path = getenv("PATH");
	if (!path)
		return NULL;
	char *copy = gn_strdup(path), *save = NULL, *found = NULL;
	for (char *dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save))
		if (is_exec(dir, "initdb") && is_exec(dir, "pg_ctl"))
			found = gn_strdup(dir);
	free(copy);
	return found;
}

/* Runs bindir/prog with args as the cluster's user, output appended to the cluster log.
 * Returns the exit status, or -1 when it could not run. */
static int run(const pgcluster *pc, const char *prog, const char *const *args)
{
	char path[4096];
	const char *argv[24];
	size_t n = 0;
	snprintf(path, sizeof(path), "%s/%s", pc->bindir, prog);
	argv[n++] = path;
	for (; args[n - 1] && n < GN_ARRAY_LEN(argv) - 1; n++)
		argv[n] = args[n - 1];
	argv[n] = NULL;

	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = open(pc->logfile, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, 0);
		if (pc->drop_privileges && (setgroups(0, NULL) != 0 || setgid(pc->gid) != 0 || setuid(pc->uid) != 0))
			_exit(126);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int make_dir(const pgcluster *pc, const char *dir, mode_t mode, gn_err *err)
{
	struct stat st;
	if (mkdir(dir, mode) == 0) {
		/* Only what we just created changes hands; lchown never follows a link. */
		if (pc->drop_privileges && lchown(dir, pc->uid, pc->gid) < 0)
			return gn_err_set(err, GN_ERROR, "cannot give %s to the PostgreSQL user: %s", dir,
					  strerror(errno));
		return 0;
	}
	if (errno != EEXIST)
		return gn_err_set(err, GN_ERROR, "cannot create %s: %s", dir, strerror(errno));
	/* An existing entry must be a real directory (not a link the cluster's user planted). */
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return gn_err_set(err, GN_EINVAL, "%s exists and is not a directory; refusing to use it", dir);
	return 0;
}

static int create_database(const char *conninfo_postgres, gn_err *err)
{
	int error = 0;
	PGconn *c = PQconnectdb(conninfo_postgres);
	PGresult *r = NULL;
	if (PQstatus(c) != CONNECTION_OK) {
		error = gn_err_set(err, GN_EUNAVAIL, "cannot connect to the private cluster: %s", PQerrorMessage(c));
		goto out;
	}
	r = PQexec(c, "SELECT 1 FROM pg_database WHERE datname = 'ganglion'");
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 0) {
		PQclear(r);
		r = PQexec(c, "CREATE DATABASE ganglion");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			error = gn_err_set(err, GN_ERROR, "cannot create database ganglion: %s", PQerrorMessage(c));
	}
out:
	PQclear(r);
	PQfinish(c);
	return error;
}

int pgcluster_start(pgcluster **out, char **out_conninfo, const char *data_dir, const char *bindir, const char *user,
		    gn_err *err)
{
	int error = 0;
	char *opts = NULL, *ci_postgres = NULL;
	pgcluster *pc = gn_calloc(1, sizeof(*pc));

	pc->bindir = bindir && *bindir ? gn_strdup(bindir) : find_bindir();
	if (!pc->bindir || !is_exec(pc->bindir, "initdb") || !is_exec(pc->bindir, "pg_ctl")) {
		error = gn_err_set(err, GN_ENOTFOUND,
				   "PostgreSQL server binaries (initdb, pg_ctl) not found%s%s: install them with "
				   "`apt-get install postgresql`, set pg-bindir, or give --database-url",
				   bindir && *bindir ? " in " : "", bindir && *bindir ? bindir : "");
		goto out;
	}
	if (strchr(data_dir, '\'') || strchr(data_dir, '"') || strchr(data_dir, '\\')) {
		error = gn_err_set(err, GN_EINVAL,
				   "data-dir must not contain quotes or backslashes for the private cluster");
		goto out;
	}
	if (geteuid() == 0) {
		/* PostgreSQL refuses to run as root: run it as the configured unprivileged user. */
		struct passwd *pw = getpwnam(user && *user ? user : "postgres");
		if (!pw || pw->pw_uid == 0) {
			error = gn_err_set(
				err, GN_EINVAL,
				"gangliond runs as root and PostgreSQL refuses to: user '%s' for the private "
				"cluster does not exist (install the postgresql package, which creates it, "
				"set pg-user, run gangliond as an unprivileged user, or give --database-url)",
				user && *user ? user : "postgres");
			goto out;
		}
		pc->drop_privileges = true;
		pc->uid = pw->pw_uid;
		pc->gid = pw->pw_gid;
		/* The cluster's user must be able to reach DATA_DIR/pg; DATA_DIR itself stays unlistable. */
		struct stat st;
		if (stat(data_dir, &st) == 0 && !(st.st_mode & S_IXOTH) &&
		    chmod(data_dir, (st.st_mode & 07777) | 0711) == 0)
			gn_log(GN_LOG_INFO,
			       "event=pg_datadir_chmod dir=%s mode=0711 why=\"cluster user %s must traverse it\"",
			       data_dir, pw->pw_name);
		/* Its parents are not ours to change: say which one blocks the way. */
		char *walk = realpath(data_dir, NULL);
		for (char *slash = walk ? strrchr(walk, '/') : NULL; slash && slash != walk;
		     slash = strrchr(walk, '/')) {
			*slash = '\0';
			if (stat(walk, &st) == 0 && !(st.st_mode & S_IXOTH) &&
			    !(st.st_uid == pw->pw_uid && (st.st_mode & S_IXUSR)) &&
			    !(st.st_gid == pw->pw_gid && (st.st_mode & S_IXGRP))) {
				error = gn_err_set(
					err, GN_EINVAL,
					"PostgreSQL runs as '%s', which cannot enter %s (mode %04o) on the way to the "
					"data dir: `chmod o+x %s`, or choose a data-dir it can reach",
					pw->pw_name, walk, (unsigned)(st.st_mode & 07777), walk);
				free(walk);
				goto out;
			}
		}
		free(walk);
	}
	pc->pgdir = gn_asprintf("%s/pg", data_dir);
	pc->datadir = gn_asprintf("%s/pg/data", data_dir);
	pc->sockdir = gn_asprintf("%s/pg/run", data_dir);
	pc->logfile = gn_asprintf("%s/pg/postgres.log", data_dir);
	if ((error = make_dir(pc, pc->pgdir, 0700, err)) || (error = make_dir(pc, pc->sockdir, 0700, err)))
		goto out;
	/* O_NOFOLLOW: root must not be led to create or chown a file elsewhere through a link. */
	int lfd = open(pc->logfile, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lfd >= 0) {
		struct stat lst;
		if (pc->drop_privileges && fstat(lfd, &lst) == 0 && S_ISREG(lst.st_mode) && lst.st_uid == 0 &&
		    fchown(lfd, pc->uid, pc->gid) < 0)
			gn_log(GN_LOG_WARN, "event=pg_log_chown_failed file=%s", pc->logfile);
		close(lfd);
	}

	char versionfile[4096];
	snprintf(versionfile, sizeof(versionfile), "%s/PG_VERSION", pc->datadir);
	if (access(versionfile, F_OK) != 0) {
		gn_log(GN_LOG_INFO, "event=pg_initdb dir=%s bindir=%s", pc->datadir, pc->bindir);
		const char *args[] = {"-D",    pc->datadir, "-U",   "ganglion",   "-A",
				      "trust", "-E",        "UTF8", "--locale=C", NULL};
		if (run(pc, "initdb", args) != 0) {
			error = gn_err_set(err, GN_ERROR, "initdb failed; see %s", pc->logfile);
			goto out;
		}
	}
	const char *st_args[] = {"-D", pc->datadir, "status", NULL};
	if (run(pc, "pg_ctl", st_args) == 0) {
		gn_log(GN_LOG_INFO, "event=pg_already_running dir=%s", pc->datadir);
	} else {
		opts = gn_asprintf(
			"-c listen_addresses='' -c unix_socket_directories='%s' -c unix_socket_permissions=0700 -c port=5432",
			pc->sockdir);
		const char *args[] = {"-D", pc->datadir, "-l", pc->logfile, "-w", "-t",
				      "60", "-o",        opts, "start",     NULL};
		gn_log(GN_LOG_INFO, "event=pg_start dir=%s", pc->datadir);
		if (run(pc, "pg_ctl", args) != 0) {
			error = gn_err_set(err, GN_ERROR, "the private PostgreSQL cluster did not start; see %s",
					   pc->logfile);
			goto out;
		}
	}
	ci_postgres = gn_asprintf("host=%s port=5432 dbname=postgres user=ganglion", pc->sockdir);
	if ((error = create_database(ci_postgres, err))) {
		pgcluster_stop(pc);
		pc = NULL;
		goto out;
	}
	*out_conninfo = gn_asprintf("host=%s port=5432 dbname=ganglion user=ganglion", pc->sockdir);
	*out = pc;
	pc = NULL;
out:
	if (pc) {
		free(pc->bindir);
		free(pc->pgdir);
		free(pc->datadir);
		free(pc->sockdir);
		free(pc->logfile);
		free(pc);
	}
	free(opts);
	free(ci_postgres);
	return error;
}

void pgcluster_stop(pgcluster *pc)
{
	if (!pc)
		return;
	const char *args[] = {"-D", pc->datadir, "-m", "fast", "-w", "-t", "60", "stop", NULL};
	if (run(pc, "pg_ctl", args) != 0)
		gn_log(GN_LOG_WARN, "event=pg_stop_failed dir=%s log=%s", pc->datadir, pc->logfile);
	else
		gn_log(GN_LOG_INFO, "event=pg_stopped dir=%s", pc->datadir);
	free(pc->bindir);
	free(pc->pgdir);
	free(pc->datadir);
	free(pc->sockdir);
	free(pc->logfile);
	free(pc);
}
