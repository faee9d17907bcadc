/* The naming rules of the model registry, shared by gangliond (which enforces them) and the CLI
 * (which checks before uploading): model names, aliases, semantic versions (SemVer 2.0.0),
 * artifact formats and artifact file names. Every check returns 0 or GN_EINVAL with a message
 * that names the rule, and leaves err untouched on success. */
#ifndef GN_MODEL_H
#define GN_MODEL_H

#include "common.h"

#define GN_MODEL_NAME_MAX 63      /* a DNS label */
#define GN_MODEL_VERSION_MAX 64   /* bytes of a version string */
#define GN_MODEL_FILENAME_MAX 128 /* bytes of an artifact file name */
#define GN_MODEL_FORMAT_DEFAULT "other"

/* A parsed version. prerelease_key orders pre-releases by SemVer precedence when compared
 * bytewise (strcmp, or COLLATE "C" in SQL); build metadata is ignored, as precedence ignores it. */
struct gn_semver {
	int64_t major, minor, patch;
	char prerelease[GN_MODEL_VERSION_MAX + 1]; /* empty for a release */
	char prerelease_key[768];                  /* room for 32 numeric identifiers */
};

/* An artifact format and the file extension of its default file name (both static). */
struct gn_model_format {
	const char *name; /* "onnx" */
	const char *ext;  /* "onnx" (model.onnx) */
};

/* Checks a model name: a lower-case DNS label, ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$. */
int gn_model_name_check(const char *name, gn_err *err) GN_WUR;
/* Checks an alias: 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit, and not spelled
 * like a version (it would shadow that version in lookups). */
int gn_model_alias_check(const char *alias, gn_err *err) GN_WUR;
/* Parses MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD] (SemVer 2.0.0, at most 64 bytes) into out. */
int gn_model_version_parse(struct gn_semver *out, const char *v, gn_err *err) GN_WUR;
/* Compares two parsed versions by SemVer precedence: <0, 0 or >0, as strcmp does. It is the
 * order the server's SQL sorts in (major, minor, patch, release after pre-release, key). */
int gn_model_version_cmp(const struct gn_semver *a, const struct gn_semver *b);
/* Points *out at the format named name (borrowed, static); GN_EINVAL for an unknown one. */
int gn_model_format_lookup(const struct gn_model_format **out, const char *name, gn_err *err) GN_WUR;
/* Checks an artifact file name: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with '.'. */
int gn_model_filename_check(const char *filename, gn_err *err) GN_WUR;

#endif
