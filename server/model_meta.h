/* The metadata published with a model version: what gangliond checks beyond the naming rules
 * of lib/model.h. */
#ifndef GD_MODEL_META_H
#define GD_MODEL_META_H

#include "json.h"
#include "model.h"

struct model_meta {
	char version[GN_MODEL_VERSION_MAX + 1];
	struct gn_semver semver;
	const char *format; /* static string */
	char filename[GN_MODEL_FILENAME_MAX + 1];
	char stated_sha256[65]; /* empty when not stated */
	int64_t stated_length;  /* -1 when not stated */
};

/* The naming rules under their old names, until http_models.c calls lib/model.h itself. */
GN_WUR static inline int model_name_check(const char *name, gn_err *err)
{
	return gn_model_name_check(name, err);
}

GN_WUR static inline int model_alias_check(const char *alias, gn_err *err)
{
	return gn_model_alias_check(alias, err);
}

/* Checks the metadata object of an upload (fields, types, tensor specs, sample against the specs,
 * reference profile shape, and a sample unless "no_self_test" is true); fills out. GN_EINVAL with
 * a message naming the field otherwise. */
int model_meta_check(struct model_meta *out, const json_t *meta, gn_err *err) GN_WUR;
/* Returns the number of elements of tensor name in the checked metadata's list ("inputs" or
 * "outputs"), or -1 when a dimension is dynamic or there is no such tensor. */
int64_t model_meta_sample_elements(const json_t *meta, const char *list, const char *name);

#endif
