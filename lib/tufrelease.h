/* The check CI makes before signing the server's draft of the next version of a delegated targets
 * role (`ganglion models push --sign-key/--signer-cmd`, cli/release.c). The server may be
 * compromised: the draft is signed only if it is exactly what CI expects, built here from what CI
 * itself pushed. No I/O: a pure function of the draft and the expected values. */
#ifndef GN_TUFRELEASE_H
#define GN_TUFRELEASE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "common.h"

/* The latest expiry CI signs: a draft that expires later is refused. */
#define GN_TUFR_MAX_EXPIRES_S (400LL * 86400)

/* How far the "published_at" the server adds to a target's custom fields may be from now. */
#define GN_TUFR_PUBLISHED_SKEW_S 86400

struct gn_tufr_expect {
	const char *path;     /* models/NAME/VERSION/FILE of this push */
	const char *sha256;   /* the uploaded file's SHA-256, lower-case hex */
	uint64_t length;      /* and its length */
	const json_t *custom; /* the target's custom fields, as the server builds them from the pushed metadata */
	bool first_release;   /* the role may have no current version (its first release) */
	int64_t now;
};

/* Checks the server's draft {"role", "path", "current": envelope or null, "signed"}: "path" is
 * want->path; "signed" has exactly _type "targets", spec_version (the current one's, or this
 * build's for a first release), version (the current one's + 1), expires (after now and at most
 * GN_TUFR_MAX_EXPIRES_S later), targets (the current one's, plus want->path with exactly
 * want's length, SHA-256 and custom fields, but for a "published_at" within
 * GN_TUFR_PUBLISHED_SKEW_S of now) and, only when the current version has them,
 * delegations equal to the current one's. A draft without a current version passes only with
 * want->first_release, as version 1. It does not check the current version's signatures (the
 * caller does, with its keys). GN_ERROR with what is wrong, "refusing to sign". */
int gn_tufr_draft_check(const json_t *draft, const struct gn_tufr_expect *want, gn_err *err) GN_WUR;

/* Builds the custom fields the server signs for a version (server/models.c target_custom) from
 * the metadata the CLI uploads: model, version, format (default "other"), requirements, inputs,
 * outputs (null when absent), and the SHA-256 of the compact, key-sorted sample and reference
 * profile (null when absent). *out_file: the target's file name (the metadata's, else
 * model.EXT). Both new. GN_EINVAL for an unknown format. */
int gn_tufr_expected_custom(json_t **out, char **out_file, const char *model, const json_t *meta, gn_err *err) GN_WUR;

#endif
