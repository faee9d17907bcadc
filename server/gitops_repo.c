/* GitOps through libgit2: fetch (in a thread of its own, so a remote that stops answering cannot
 * hold the caller past the timeout), read the commit's tree, extract its signature. */
#include "gitops_repo.h"

#include <errno.h>
#include <git2.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fileio.h"
#include "log.h"
#include "sshsig.h"

#define MAX_DOCUMENTS 10000
#define FETCHED_REF "refs/gitops/fetched"

enum scheme { SCHEME_LOCAL, SCHEME_GIT, SCHEME_HTTPS, SCHEME_SSH, SCHEME_BAD };

static pthread_once_t git_once = PTHREAD_ONCE_INIT;

/* libgit2, without the global, XDG and system git configuration of whoever runs gangliond: only
 * gangliond's settings decide how the repository is reached. */
static void git_init(void)
{
	git_libgit2_init();
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_SYSTEM, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_XDG, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_GLOBAL, "");
	git_libgit2_opts(GIT_OPT_SET_SEARCH_PATH, GIT_CONFIG_LEVEL_PROGRAMDATA, "");
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static enum scheme scheme_of(const char *url)
{
	if (url[0] == '/' || starts(url, "file://"))
		return SCHEME_LOCAL;
	if (starts(url, "git://"))
		return SCHEME_GIT;
	if (starts(url, "https://"))
		return SCHEME_HTTPS;
	if (starts(url, "ssh://"))
		return SCHEME_SSH;
	/* scp-like user@host:path, as git accepts it */
	const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
	if (colon && colon != url && (!slash || colon < slash) && !strstr(url, "://"))
		return SCHEME_SSH;
	return SCHEME_BAD;
}

/* The host and port of an ssh URL (for known_hosts). */
static void ssh_host(char *host, size_t n, int *port, const char *url)
{
	const char *h = starts(url, "ssh://") ? url + 6 : url, *at = strchr(h, '@'), *end;
	if (at && (!strchr(h, '/') || at < strchr(h, '/')))
		h = at + 1;
	*port = 22;
	if (*h == '[') { /* ssh://[::1]:2222/x */
		end = strchr(h, ']');
		snprintf(host, n, "%.*s", end ? (int)(end - h - 1) : 0, h + 1);
		if (end && end[1] == ':')
			*port = atoi(end + 2);
		return;
	}
	end = h + strcspn(h, ":/");
	snprintf(host, n, "%.*s", (int)(end - h), h);
	if (starts(url, "ssh://") && *end == ':')
		*port = atoi(end + 1);
}

static int readable(const char *what, const char *path, gn_err *err)
{
	if (access(path, R_OK) != 0)
		return gn_err_set(err, GN_EINVAL, "%s %s cannot be read: %s", what, path, strerror(errno));
	return 0;
}

int gitops_repo_check(const struct gitops_source *src, gn_err *err)
{
	enum scheme s = scheme_of(src->url);
	if (s == SCHEME_BAD)
		return gn_err_set(err, GN_EINVAL,
				  "gitops-repository '%.200s' must be an absolute path, or a file://, git://, https:// "
				  "or ssh:// URL",
				  src->url);
	if (*src->token_file && s != SCHEME_HTTPS)
		return gn_err_set(err, GN_EINVAL, "gitops-token-file is only for an https:// gitops-repository");
	if ((*src->ssh_key || *src->known_hosts) && s != SCHEME_SSH)
		return gn_err_set(err, GN_EINVAL,
				  "gitops-ssh-key and gitops-ssh-known-hosts are only for an ssh gitops-repository");
	if (s == SCHEME_SSH && (!*src->ssh_key || !*src->known_hosts))
		return gn_err_set(err, GN_EINVAL,
				  "an ssh gitops-repository needs gitops-ssh-key and gitops-ssh-known-hosts (the "
				  "server's host key is checked)");
	if (*src->token_file && readable("gitops-token-file", src->token_file, err))
		return GN_EINVAL;
	if (*src->ssh_key && readable("gitops-ssh-key", src->ssh_key, err))
		return GN_EINVAL;
	if (*src->known_hosts && readable("gitops-ssh-known-hosts", src->known_hosts, err))
		return GN_EINVAL;
	return 0;
}

/* --- fetching, in a thread of its own ------------------------------------------------------- */

/* One fetch, shared by the caller and the fetching thread (the last to let go frees it). */
struct fetch {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;
	bool done;
	atomic_bool cancel;
	int rc;
	gn_err err;
	int64_t started;
	char *dir, *url, *refspec, *token, *ssh_key, *known_hosts;
	char host[256];
	int port;
	int auth_tries;
};

/* A fetch given up on (timed out) whose thread has not returned yet: no other starts meanwhile.
 * Compared, never dereferenced. */
static pthread_mutex_t abandoned_mu = PTHREAD_MUTEX_INITIALIZER;
static const struct fetch *abandoned;
static int64_t abandoned_since;

static void fetch_unref(struct fetch *f)
{
	pthread_mutex_lock(&f->mu);
	int left = --f->refs;
	pthread_mutex_unlock(&f->mu);
	if (left)
		return;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	if (f->token)
		OPENSSL_cleanse(f->token, strlen(f->token));
	free(f->token);
	free(f->dir);
	free(f->url);
	free(f->refspec);
	free(f->ssh_key);
	free(f->known_hosts);
	free(f);
}

static const char *git_msg(void)
{
	const git_error *e = git_error_last();
	return e && e->message ? e->message : "unknown libgit2 error";
}

static int credentials(git_credential **out, const char *url, const char *user, unsigned int allowed, void *payload)
{
	struct fetch *f = payload;
	(void)url;
	if (f->auth_tries++ > 0) {
		git_error_set_str(GIT_ERROR_NET, "the remote refused the credentials");
		return GIT_EUSER;
	}
	if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && f->token)
		return git_credential_userpass_plaintext_new(out, user && *user ? user : "git", f->token);
	if ((allowed & GIT_CREDENTIAL_SSH_KEY) && f->ssh_key)
		return git_credential_ssh_key_new(out, user && *user ? user : "git", NULL, f->ssh_key, NULL);
	if (allowed & GIT_CREDENTIAL_USERNAME)
		return git_credential_username_new(out, user && *user ? user : "git");
	git_error_set_str(GIT_ERROR_NET, "the remote asks for credentials that are not configured");
	return GIT_EUSER;
}

/* TLS: libgit2's own verification against the system's CAs decides. SSH: the host key must be in
 * gitops-ssh-known-hosts. */
static int check_certificate(git_cert *cert, int valid, const char *host, void *payload)
{
	struct fetch *f = payload;
	gn_err e;
	(void)host;
	if (cert->cert_type == GIT_CERT_X509)
		return valid ? 0 : GIT_ECERTIFICATE;
	if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2 || !f->known_hosts)
		return GIT_ECERTIFICATE;
	const git_cert_hostkey *hk = (const git_cert_hostkey *)cert;
	if (!(hk->type & GIT_CERT_SSH_RAW)) {
		git_error_set_str(GIT_ERROR_SSH, "the SSH library gave no raw host key to check");
		return GIT_EUSER;
	}
	if (gn_known_hosts_check(f->known_hosts, strlen(f->known_hosts), f->host, f->port,
				 (const unsigned char *)hk->hostkey, hk->hostkey_len, &e)) {
		git_error_set_str(GIT_ERROR_SSH, e.msg);
		return GIT_EUSER;
	}
	return 0;
}

static int progress(const git_indexer_progress *stats, void *payload)
{
	(void)stats;
	return atomic_load(&((struct fetch *)payload)->cancel) ? -1 : 0;
}

static int sideband(const char *str, int len, void *payload)
{
	(void)str;
	(void)len;
	return atomic_load(&((struct fetch *)payload)->cancel) ? -1 : 0;
}

static int do_fetch(struct fetch *f)
{
	git_repository *repo = NULL;
	git_remote *remote = NULL;
	git_fetch_options o;
	git_remote_create_options ro;
	char *specs[] = {f->refspec};
	git_strarray arr = {specs, 1};
	int error = 0;
	if (git_repository_open_bare(&repo, f->dir) < 0 && git_repository_init(&repo, f->dir, 1) < 0)
		return gn_err_set(&f->err, GN_ERROR, "cannot create the GitOps cache %s: %s", f->dir, git_msg());
	git_fetch_options_init(&o, GIT_FETCH_OPTIONS_VERSION);
	o.callbacks.credentials = credentials;
	o.callbacks.certificate_check = check_certificate;
	o.callbacks.transfer_progress = progress;
	o.callbacks.sideband_progress = sideband;
	o.callbacks.payload = f;
	o.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
	/* Not git_remote_create_anonymous: its url.*.insteadOf lookup leaks in libgit2 1.5 (a regex
	 * match data per configuration entry, some 240 KB a fetch), and there is no such rule to apply. */
	git_remote_create_options_init(&ro, GIT_REMOTE_CREATE_OPTIONS_VERSION);
	ro.repository = repo;
	ro.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
	if (git_remote_create_with_opts(&remote, f->url, &ro) < 0)
		error = gn_err_set(&f->err, GN_EINVAL, "bad repository URL: %s", git_msg());
	else if (git_remote_fetch(remote, &arr, &o, NULL) < 0) {
		const git_error *e = git_error_last();
		if (e && e->message && strstr(e->message, "find remote ref"))
			error = gn_err_set(&f->err, GN_ENOTFOUND, "%s", e->message);
		else
			error = gn_err_set(&f->err, GN_EUNAVAIL, "cannot fetch from the repository: %s", git_msg());
	}
	git_remote_free(remote);
	git_repository_free(repo);
	return error;
}

static void *fetch_main(void *arg)
{
	struct fetch *f = arg;
	int rc = do_fetch(f);
	pthread_mutex_lock(&f->mu);
	f->rc = rc;
	f->done = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_mutex_lock(&abandoned_mu);
	if (abandoned == f) {
		abandoned = NULL;
		gn_log(GN_LOG_INFO, "event=gitops_fetch_ended_late url=%s", f->url);
	}
	pthread_mutex_unlock(&abandoned_mu);
	git_error_clear();
	fetch_unref(f);
	return NULL;
}

static int fetch_new(struct fetch **out, const struct gitops_source *src, const char *ref, gn_err *err)
{
	struct fetch *f = gn_calloc(1, sizeof(*f));
	size_t len;
	gn_err e;
	int error = 0;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	f->refs = 1;
	f->started = gn_now();
	f->dir = gn_asprintf("%s/cache.git", src->cache_dir);
	f->url = gn_strdup(src->url);
	f->refspec = gn_asprintf("+%s:" FETCHED_REF, ref);
	if (*src->ssh_key)
		f->ssh_key = gn_strdup(src->ssh_key);
	if (*src->token_file && gn_secret_file_read(&f->token, src->token_file, 4096, &e))
		error = gn_err_set(err, GN_EINVAL, "gitops-token-file: %s", e.msg);
	if (!error && *src->known_hosts && gn_file_read(&f->known_hosts, &len, src->known_hosts, 1 << 20, &e))
		error = gn_err_set(err, GN_EINVAL, "gitops-ssh-known-hosts: %s", e.msg);
	if (scheme_of(src->url) == SCHEME_SSH)
		ssh_host(f->host, sizeof(f->host), &f->port, src->url);
	if (error) {
		fetch_unref(f);
		return error;
	}
	*out = f;
	return 0;
}

/* Fetches ref into FETCHED_REF, giving up after the timeout (the thread then ends on its own). */
static int fetch(const struct gitops_source *src, const char *ref, gn_err *err)
{
	struct fetch *f = NULL;
	pthread_t t;
	int error;
	pthread_mutex_lock(&abandoned_mu);
	int64_t since = abandoned ? abandoned_since : 0;
	pthread_mutex_unlock(&abandoned_mu);
	if (since)
		return gn_err_set(err, GN_EUNAVAIL,
				  "an earlier fetch has not ended after %lld s; the remote does not answer",
				  (long long)(gn_now() - since));
	if (mkdir(src->cache_dir, 0700) < 0 && errno != EEXIST)
		return gn_err_set(err, GN_ERROR, "cannot create %s: %s", src->cache_dir, strerror(errno));
	if ((error = fetch_new(&f, src, ref, err)))
		return error;
	f->refs = 2;
	if (pthread_create(&t, NULL, fetch_main, f) != 0) {
		f->refs = 1;
		fetch_unref(f);
		return gn_err_set(err, GN_ERROR, "cannot start a fetch thread");
	}
	pthread_detach(t);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += (time_t)src->timeout_s;
	pthread_mutex_lock(&f->mu);
	while (!f->done && pthread_cond_timedwait(&f->cv, &f->mu, &deadline) != ETIMEDOUT)
		;
	if (f->done) {
		if ((error = f->rc))
			*err = f->err;
	} else {
		/* Still under f->mu: the thread marks itself done after this, then finds itself here. */
		atomic_store(&f->cancel, true);
		pthread_mutex_lock(&abandoned_mu);
		abandoned = f;
		abandoned_since = f->started;
		pthread_mutex_unlock(&abandoned_mu);
		error = gn_err_set(err, GN_EUNAVAIL, "the fetch from %s did not end within %lld s (gitops-timeout)",
				   src->url, (long long)src->timeout_s);
	}
	pthread_mutex_unlock(&f->mu);
	fetch_unref(f);
	return error;
}

/* --- reading the commit --------------------------------------------------------------------- */

struct walk {
	git_repository *repo;
	gn_manifest_set *set;
	const char *base; /* the configured path, "" for the root */
	size_t count;
};

static int walk_entry(const char *root, const git_tree_entry *e, void *payload)
{
	struct walk *w = payload;
	const char *name = git_tree_entry_name(e);
	git_filemode_t mode = git_tree_entry_filemode(e);
	git_blob *blob = NULL;
	if (name[0] == '.')
		return 1; /* .github/, .gitignore: not the fleet's */
	if (mode == GIT_FILEMODE_TREE)
		return 0;
	char *file = gn_asprintf("%s%s%s%s", w->base, *w->base ? "/" : "", root, name);
	if (mode == GIT_FILEMODE_COMMIT)
		gn_manifest_errors_add(&w->set->errors, file, 0, "a submodule: its documents are not read");
	else if (!gn_manifest_is_document(name))
		;
	else if (mode == GIT_FILEMODE_LINK)
		gn_manifest_errors_add(&w->set->errors, file, 0, "a symbolic link: not followed");
	else if (++w->count > MAX_DOCUMENTS) {
		gn_manifest_errors_add(&w->set->errors, file, 0, "more than %d documents", MAX_DOCUMENTS);
		free(file);
		return -1;
	} else if (git_blob_lookup(&blob, w->repo, git_tree_entry_id(e)) < 0)
		gn_manifest_errors_add(&w->set->errors, file, 0, "cannot read: %s", git_msg());
	else
		gn_manifest_set_add(w->set, file, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
	git_blob_free(blob);
	free(file);
	return 0;
}

/* Reads the documents under path of tree into set. */
static int read_tree(gn_manifest_set *set, git_repository *repo, git_tree *root, const char *path, const char *id,
		     gn_err *err)
{
	git_tree_entry *entry = NULL;
	git_tree *sub = NULL;
	int error = 0;
	struct walk w = {repo, set, path, 0};
	if (*path) {
		if (git_tree_entry_bypath(&entry, root, path) < 0 || git_tree_entry_type(entry) != GIT_OBJECT_TREE) {
			error = gn_err_set(err, GN_ENOTFOUND, "commit %.12s has no directory '%s' (gitops-path)", id,
					   path);
			goto out;
		}
		if (git_tree_lookup(&sub, repo, git_tree_entry_id(entry)) < 0) {
			error = gn_err_set(err, GN_ERROR, "cannot read '%s': %s", path, git_msg());
			goto out;
		}
	}
	if (git_tree_walk(sub ? sub : root, GIT_TREEWALK_PRE, walk_entry, &w) < 0 && w.count <= MAX_DOCUMENTS)
		error = gn_err_set(err, GN_ERROR, "cannot read the tree of %.12s: %s", id, git_msg());
	gn_manifest_set_finish(set);
out:
	git_tree_free(sub);
	git_tree_entry_free(entry);
	return error;
}

static void read_signature(struct gitops_commit *out, git_repository *repo, const git_oid *oid)
{
	git_buf sig = {0}, data = {0};
	if (git_commit_extract_signature(&sig, &data, repo, (git_oid *)oid, NULL) == 0) {
		out->signature = gn_strndup(sig.ptr, sig.size);
		out->signature_len = sig.size;
		out->signed_data = gn_strndup(data.ptr, data.size);
		out->signed_len = data.size;
	}
	git_buf_dispose(&sig);
	git_buf_dispose(&data);
	git_error_clear();
}

static int descends(git_repository *repo, const git_oid *head, const char *since)
{
	git_oid s;
	git_commit *c = NULL;
	if (!since)
		return -1;
	/* The fetch brought every ancestor of head: a commit it lacks is none of them. */
	if (git_oid_fromstr(&s, since) < 0 || git_commit_lookup(&c, repo, &s) < 0) {
		git_error_clear();
		return 0;
	}
	git_commit_free(c);
	return git_oid_equal(head, &s) || git_graph_descendant_of(repo, head, &s) == 1;
}

/* The full name of a ref given as a branch name or in full (new). */
static char *full_ref(const char *ref)
{
	return starts(ref, "refs/") ? gn_strdup(ref) : gn_asprintf("refs/heads/%s", ref);
}

bool gitops_repo_ref_valid(const char *ref)
{
	int valid = 0;
	char *full = full_ref(ref);
	pthread_once(&git_once, git_init);
	if (git_reference_name_is_valid(&valid, full) < 0)
		valid = 0;
	free(full);
	return valid;
}

int gitops_repo_read(struct gitops_commit *out, gn_manifest_set *set, const struct gitops_source *src, const char *ref,
		     const char *path, const char *since, gn_err *err)
{
	git_repository *repo = NULL;
	git_commit *commit = NULL;
	git_tree *tree = NULL;
	git_oid oid;
	int error;
	char *full = full_ref(ref);
	char *dir = gn_asprintf("%s/cache.git", src->cache_dir);
	memset(out, 0, sizeof(*out));
	pthread_once(&git_once, git_init);
	if (!gitops_repo_ref_valid(ref)) {
		error = gn_err_set(err, GN_EINVAL, "'%.200s' is not a valid branch or ref name", ref);
		goto out;
	}
	if ((error = fetch(src, full, err)))
		goto out;
	if (git_repository_open_bare(&repo, dir) < 0 || git_reference_name_to_id(&oid, repo, FETCHED_REF) < 0 ||
	    git_commit_lookup(&commit, repo, &oid) < 0 || git_commit_tree(&tree, commit) < 0) {
		error = gn_err_set(err, GN_ERROR, "cannot read the fetched %s: %s", full, git_msg());
		goto out;
	}
	git_oid_tostr(out->id, sizeof(out->id), &oid);
	out->time = (int64_t)git_commit_time(commit);
	out->summary = gn_strdup(git_commit_summary(commit) ? git_commit_summary(commit) : "");
	out->descends = descends(repo, &oid, since);
	read_signature(out, repo, &oid);
	error = read_tree(set, repo, tree, path, out->id, err);
out:
	if (error)
		git_error_clear();
	git_tree_free(tree);
	git_commit_free(commit);
	git_repository_free(repo);
	free(full);
	free(dir);
	return error;
}

void gitops_commit_cleanup(struct gitops_commit *c)
{
	free(c->summary);
	free(c->signature);
	free(c->signed_data);
	memset(c, 0, sizeof(*c));
}
