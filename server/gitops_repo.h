/* The GitOps repository through libgit2: fetching a branch (or any ref) into a cache under the data
 * directory, reading the documents under a path of the fetched commit's tree, and the commit's
 * signature. No database; the sync itself is in gitops.c. */
#ifndef GD_GITOPS_REPO_H
#define GD_GITOPS_REPO_H

#include "common.h"
#include "manifest.h"

/* Where the repository is and how to reach it (strings borrowed). */
struct gitops_source {
	const char *url;         /* a local path, file://, git://, https:// or ssh:// (also user@host:path) */
	const char *token_file;  /* https: a token sent as the password (the URL's user name, else "git") */
	const char *ssh_key;     /* ssh: a private key file without a passphrase */
	const char *known_hosts; /* ssh: the server's host key must be listed here */
	const char *cache_dir;   /* where the fetched objects are kept (DATA_DIR/gitops) */
	int64_t timeout_s;       /* a fetch that takes longer is given up */
};

/* A fetched commit. */
struct gitops_commit {
	char id[41];
	int64_t time;    /* committer time, seconds since the epoch */
	char *summary;   /* first line of the message (new) */
	char *signature; /* the armored signature (gpgsig header), or NULL: unsigned (new) */
	size_t signature_len;
	char *signed_data; /* what the signature covers (new) */
	size_t signed_len;
	int descends; /* 1: a descendant of (or equal to) the `since` commit; 0: not (history was
		       * rewritten, or another repository); -1: no since */
};

/* Checks the settings: a URL of a known form and, for its scheme, the files it needs, readable.
 * GN_EINVAL naming the setting. */
int gitops_repo_check(const struct gitops_source *src, gn_err *err) GN_WUR;
/* Fetches ref (a branch name, or a full name: refs/heads/x, refs/tags/v1, refs/pull/7/head) from
 * src and reads its commit into out and every document under path (the whole tree when empty) into
 * set (files that cannot be read are errors in set, with their paths from the repository's root).
 * since is the id of the commit applied last, or NULL. GN_EUNAVAIL when the remote cannot be
 * reached, refuses the credentials or does not answer within the timeout (the message says which);
 * GN_ENOTFOUND for a ref or path the commit lacks; GN_EINVAL for a malformed ref. Not
 * thread-safe for one cache_dir: callers hold the GitOps lock. */
int gitops_repo_read(struct gitops_commit *out, gn_manifest_set *set, const struct gitops_source *src, const char *ref,
		     const char *path, const char *since, gn_err *err) GN_WUR;
void gitops_commit_cleanup(struct gitops_commit *c);
/* True when ref is a valid ref name: a branch name, or a full name (refs/...). */
bool gitops_repo_ref_valid(const char *ref);

#endif
