/* GitOps manifests: the fleet's desired state kept in a git repository, one object per file, in
 * YAML (1.2 core schema) or JSON. Parsed with libyaml so that every value keeps its line, and
 * checked against a table of kinds (Deployment, ModelAlias; open for more), so every error names
 * its file and line. Shared by gangliond (the sync, server/gitops.c) and the CLI (`ganglion gitops validate`): what
 * needs the server (model versions that exist, the rollout strategy's rules, overlaps) is checked
 * there. Never prints. */
#ifndef GN_MANIFEST_H
#define GN_MANIFEST_H

#include <jansson.h>
#include <stdarg.h>

#include "common.h"
#include "json.h"

#define GN_MANIFEST_API_VERSION "ganglion/v1"
#define GN_MANIFEST_MAX_FILE (1024 * 1024) /* bytes of one document */
#define GN_MANIFEST_MAX_DEPTH 32           /* nesting of one document */

/* Problems found in a set of documents, each with the file and line it is about (line 0: the
 * file as a whole; file "": the commit as a whole, null in JSON). */
struct gn_manifest_error {
	char *file;
	int line;
	char *msg;
};
typedef struct gn_manifest_errors {
	struct gn_manifest_error *v;
	size_t n, cap;
	size_t more; /* errors past GN_MANIFEST_MAX_ERRORS, counted only */
} gn_manifest_errors;
#define GN_MANIFEST_MAX_ERRORS 1000

/* Adds an error (file and message copied). */
void gn_manifest_errors_add(gn_manifest_errors *e, const char *file, int line, const char *fmt, ...) GN_PRINTF(4, 5);
void gn_manifest_errors_vadd(gn_manifest_errors *e, const char *file, int line, const char *fmt, va_list ap);
/* Returns the errors as [{"file", "line", "message"}] (new); a last entry without a file counts
 * those past the limit. */
json_t *gn_manifest_errors_json(const gn_manifest_errors *e);
void gn_manifest_errors_cleanup(gn_manifest_errors *e);

/* Where each value of a document starts, by path: "name", "strategy.stages[1].percent"; the
 * path "" is the document itself. */
typedef struct gn_manifest_lines {
	struct gn_manifest_line {
		char *path;
		int line;
	} * v;
	size_t n, cap;
} gn_manifest_lines;

/* Returns the line of the value at path, or of the nearest value that encloses it ("a.b[2].c",
 * then "a.b[2]", "a.b", "a", ""); 1 when nothing matches. */
int gn_manifest_line(const gn_manifest_lines *lines, const char *path);

/* A kind of object: its fields and the checks that need no server. */
struct gn_manifest_kind {
	const char *name; /* "Deployment" */
	const gn_json_field *fields;
	size_t nfields;
	/* Checks the fields' values (their presence and types are checked before) and writes the
	 * object's key, unique within its kind ("cams", "det/production"), into *out_key (new);
	 * each problem goes to errs with the line of the value. */
	void (*check)(char **out_key, const json_t *obj, const char *file, const gn_manifest_lines *lines,
		      gn_manifest_errors *errs);
};

/* Returns the kind called name (borrowed, static), or NULL. */
const struct gn_manifest_kind *gn_manifest_kind_lookup(const char *name);

/* One object read from one file. */
typedef struct gn_manifest_object {
	const struct gn_manifest_kind *kind;
	char *key;   /* unique within its kind */
	char *file;  /* its path in the repository */
	json_t *doc; /* the whole document, apiVersion and kind included */
	gn_manifest_lines lines;
} gn_manifest_object;

/* The objects of a commit (or a directory), and the errors found reading them. */
typedef struct gn_manifest_set {
	gn_manifest_object *v;
	size_t n, cap;
	gn_manifest_errors errors;
} gn_manifest_set;

/* True for the files that hold documents: *.yaml, *.yml and *.json. Other files (a README) are
 * not read. */
bool gn_manifest_is_document(const char *path);
/* Parses len bytes of file (YAML, or strict JSON for *.json) and adds its object to set, or every
 * error found (with its line) to set->errors. */
void gn_manifest_set_add(gn_manifest_set *set, const char *file, const char *buf, size_t len);
/* Reports objects declared by more than one file (an error naming both). Call once all files are
 * added. */
void gn_manifest_set_finish(gn_manifest_set *set);
/* Returns the object of that kind and key (borrowed), or NULL. */
const gn_manifest_object *gn_manifest_set_find(const gn_manifest_set *set, const char *kind, const char *key);
void gn_manifest_set_cleanup(gn_manifest_set *set);

#endif
