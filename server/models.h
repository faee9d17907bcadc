/* The model registry: immutable versions stored content-addressed, aliases, publishing. Domain
 * layer. */
#ifndef GD_MODELS_H
#define GD_MODELS_H

#include "actor.h"
#include "artifacts.h"
#include "db.h"
#include "onnx.h"
#include "tuf_sign.h"

/* Pages over models: ($1 cursor name or NULL, $2 limit) -> (JSON text, name). */
extern const db_stmt models_list_stmt;

/* Checks an upload's metadata before its artifact arrives, so a bad or duplicate version is
 * refused before gigabytes do: GN_EINVAL (bad metadata, a stated length of 0), GN_ECONFLICT
 * (version taken), GN_ETOOBIG (stated length over max_artifact_size). No transaction. */
int models_upload_check(db_conn *c, const char *name, const char *meta, size_t len, int json_depth,
			int64_t max_artifact_size, gn_err *err) GN_WUR;
/* At most this many sample tensor files (.npy) per publish. */
#define MODELS_MAX_SAMPLE_FILES 64
/* A sample tensor file received with a publish: its upload, and its first bytes (at least the
 * .npy header, at most GN_NPY_HEADER_MAX), kept as they streamed in. */
struct models_sample_file {
	artifact_upload *up;
	gn_buf head;
};

/* The artifact of a publish as it streams in: its upload, and its bytes walked as an ONNX model
 * (the format is known only from the metadata, which may come after the artifact). */
struct models_artifact {
	artifact_upload *up;
	gn_onnx_stream *onnx;
};
/* Starts receiving the artifact into a (zeroed). */
int models_artifact_begin(struct models_artifact *a, gn_err *err) GN_WUR;
/* Appends bytes: stored and hashed (GN_ETOOBIG past max bytes, as artifacts_write) and walked. */
int models_artifact_write(struct models_artifact *a, const void *buf, size_t len, uint64_t max, gn_err *err) GN_WUR;
/* Drops what models_publish did not take (the temp upload); a zeroed a is fine. */
void models_artifact_cleanup(struct models_artifact *a);

/* Publishes version meta (the metadata part's bytes) of model `name` with the streamed artifact
 * (its contents taken: committed or aborted): checks the metadata and the stated digest and length,
 * records the version, moves the file into place, re-signs the TUF targets and audits, all in one
 * transaction of its own; a file left unreferenced by a failure is removed. *out is the version's
 * JSON text (new). The sample's tensor files (files[i].up taken the same way) must be exactly those
 * the sample names by digest and length, each a .npy file with as many elements as its tensor's
 * shape. For an ONNX artifact (format "onnx") a stated requirements.opset must be the opset the
 * file declares for the default domain; one left out is filled in from the file (and stays out
 * when the file declares none or cannot be read as ONNX: logged, and the devices' load refuses it). GN_EINVAL for bad
 * metadata, an empty (0-byte) artifact, a digest or length other than the stated one, or a sample file missing, unnamed
 * or not matching its tensor; GN_EMISMATCH for a stated opset the ONNX artifact does not declare
 * (another one, none, or a file that cannot be read as ONNX);
 * GN_ECONFLICT for a version already published. */
int models_publish(char **out, db_conn *c, const struct gd_actor *who, const struct tuf_settings *tuf, const char *name,
		   const char *meta, size_t meta_len, int json_depth, struct models_artifact *art,
		   struct models_sample_file *files, size_t nfiles, gn_err *err) GN_WUR;

/* Checks that who may download the artifact with this digest (64 lower-case hex digits): a
 * committed version must reference it, else GN_ENOTFOUND; a device may read only what its
 * director targets name or named before (what it runs, and what it may roll back to), else
 * GN_EFORBIDDEN. A plain read. */
int models_artifact_readable(db_conn *c, const struct gd_actor *who, const char *digest, gn_err *err) GN_WUR;
/* Finds the artifact at a TUF target path of the image repository, models/name/version/file,
 * where file is "HASH.FILENAME" (consistent snapshots: HASH is the target's SHA-256 in lower-case
 * hex): its digest into out (65 bytes). GN_ENOTFOUND when no released version has that file name
 * with that hash; then the same checks as models_artifact_readable. A plain read. */
int models_target_digest(char out[GN_SHA256_HEX_LEN + 1], db_conn *c, const struct gd_actor *who, const char *name,
			 const char *version, const char *file, gn_err *err) GN_WUR;
/* Deletes the stored artifacts that no committed version references and that have not changed
 * for grace_s seconds (younger ones may belong to a publish in flight on another replica sharing
 * the store), and temp uploads as old (artifacts_sweep_temp). One replica sweeps at a time (a
 * session advisory lock; a replica that finds it taken skips the sweep); each artifact is checked
 * and removed under its digest's lock, in a transaction of its own. Run at start-up. */
int models_sweep_artifacts(db_conn *c, int64_t grace_s, gn_err *err) GN_WUR;

/* Returns a model's JSON text (new); GN_ENOTFOUND. No transaction. */
int models_get(char **out, db_conn *c, const char *name, gn_err *err) GN_WUR;
enum models_part { MODELS_VERSION, MODELS_SAMPLE, MODELS_PROFILE };
/* Returns a version's JSON, its sample, or its reference profile (new text); version may be an
 * alias. GN_ENOTFOUND; GN_EFORBIDDEN when who is a device whose director targets never named
 * that version. No transaction. */
int models_version_get(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *version,
		       enum models_part part, gn_err *err) GN_WUR;
/* Points alias at an existing version that is not yanked (GN_ECONFLICT otherwise); *out is
 * {"model","alias","version"} (new text). Own transaction, audited. */
int models_alias_set(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
		     const char *version, gn_err *err) GN_WUR;
/* Most bytes a yank's reason may take. */
#define MODELS_YANK_REASON_MAX 500
/* Yanks (yank true, with reason or NULL; again: keeps the first time, replaces the reason when one
 * is given) or unyanks a version: a yanked version stays published and served to the devices that
 * run it, but models_targetable refuses it. *out is the version's JSON text (new). GN_ENOTFOUND for
 * no such version (an alias is not resolved), GN_EINVAL for a reason over MODELS_YANK_REASON_MAX.
 * Own transaction, audited (model.yank, model.unyank). */
int models_yank(char **out, db_conn *c, const struct gd_actor *who, const char *name, const char *version, bool yank,
		const char *reason, gn_err *err) GN_WUR;
/* Checks that `what` ("a deployment", "an alias", "a device assignment") may newly target version
 * of model: GN_ECONFLICT naming the version and the yank's reason when it is yanked; 0 when it is
 * not, or does not exist (the caller resolves it). A plain read, inside the caller's transaction
 * when it has one. */
int models_targetable(db_conn *c, const char *name, const char *version, const char *what, gn_err *err) GN_WUR;
/* Removes an alias; GN_ENOTFOUND when there is none. Own transaction, audited. */
int models_alias_delete(db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
			gn_err *err) GN_WUR;
/* Point an alias at an existing version, or remove it, inside the caller's transaction (GitOps
 * applies a commit in one); audited. GN_ENOTFOUND as above. */
int models_alias_set_tx(db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
			const char *version, gn_err *err) GN_WUR;
int models_alias_delete_tx(db_conn *c, const struct gd_actor *who, const char *name, const char *alias,
			   gn_err *err) GN_WUR;

#endif
