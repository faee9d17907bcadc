/* Rules for model names, aliases, semantic versions and the metadata published with a version. */
#ifndef GD_MODEL_META_H
#define GD_MODEL_META_H

#include "json.h"

struct semver {
	int64_t major, minor, patch;
	char prerelease[65]; /* empty for a release */
	char prerelease_key[400]; /* sorts as SemVer precedence under COLLATE "C" */
};

struct model_meta {
	char version[65];
	struct semver semver;
	const char *format; /* static string */
	char filename[129];
	char stated_sha256[65]; /* empty when not stated */
	int64_t stated_length;  /* -1 when not stated */
};

/* Checks a model name: a lower-case DNS label. */
int model_name_check(const char *name, gn_err *err) GN_WUR;
/* Checks an alias name. */
int model_alias_check(const char *alias, gn_err *err) GN_WUR;
/* Parses MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (semver 2.0.0). */
int model_version_parse(struct semver *out, const char *v, gn_err *err) GN_WUR;
/* Checks the metadata object of an upload (fields, types, tensor specs, sample against the specs,
 * reference profile shape); fills out. GN_EINVAL with a message naming the field otherwise. */
int model_meta_check(struct model_meta *out, const json_t *meta, gn_err *err) GN_WUR;

#endif
