/* What a release needs of a device (the "requirements" object of its metadata, which the signed
 * target carries in its custom fields) and whether a device provides it, judged on the facts its
 * agent reports at check-in. Shared by gangliond (it validates releases and refuses to deploy to
 * devices that cannot run them) and the agent (it checks again before it downloads). */
#ifndef GN_REQUIREMENTS_H
#define GN_REQUIREMENTS_H

#include <jansson.h>

#include "common.h"

#define GN_REQ_MAX_NAMES 8            /* runtimes or accelerators one release may list */
#define GN_REQ_NAME_MAX 32            /* bytes of a runtime name */
#define GN_REQ_ACCEL_MAX 15           /* bytes of an accelerator kind (a runtime target name) */
#define GN_REQ_MEMORY_MB_MAX 16777216 /* 16 TiB */
#define GN_REQ_OPSET_MAX 1000         /* the same bound as lib/onnx.h's GN_ONNX_OPSET_MAX */

/* What gn_requirements_match decides. */
enum gn_req_verdict {
	GN_REQ_OK = 0,      /* the device provides everything the release lists */
	GN_REQ_REFUSED = 1, /* it lacks something: a runtime, an accelerator kind or memory */
	GN_REQ_UNKNOWN = 2, /* it has not reported the facts needed to tell */
};

/* Checks a "requirements" object strictly: only runtime (a free-text note), runtimes (names of
 * runtime plugins, any of which may run the release), accelerators (target kinds such as cpu,
 * cuda, tensorrt, any of which may run it), min_memory_mb (memory the model needs on the target
 * it runs on) and opset (the ONNX opset of the model's default domain, 1 to GN_REQ_OPSET_MAX); unknown fields, wrong
 * types, empty or repeated names and out-of-range numbers are GN_EINVAL with a message naming the field. Leaves err
 * untouched on success. */
int gn_requirements_check(const json_t *req, gn_err *err) GN_WUR;

/* Whether a device whose check-in facts are facts (NULL when it has reported none) can run a
 * release that needs req (NULL or an object that gn_requirements_check accepted). An opset above
 * the runtime's reported onnx_opset is refused; a runtime that reports none is not refused for it
 * (its load decides), nor is one that does not report its memory. Writes a
 * one-line reason into why (why may be NULL) unless the verdict is GN_REQ_OK. Pure. */
enum gn_req_verdict gn_requirements_match(const json_t *req, const json_t *facts, char *why, size_t whylen);

/* The most memory, in bytes, that the targets of the device's runtime named in req's accelerators
 * (every target when req lists none) report in total; 0 when none reports it. Pure. */
uint64_t gn_requirements_target_memory(const json_t *req, const json_t *facts);

/* Reconciles a release's requirements.opset with what its ONNX file declares for the default
 * domain, as gn_onnx_* read it: parse_rc 0 and opset, GN_ENOTFOUND when the file declares none, any
 * other code when it cannot be read as ONNX (parse_msg says why). One stated must be the file's:
 * GN_EMISMATCH otherwise, with a message naming file (how the caller calls it: a path, "the
 * artifact") and both sides. One left out is filled in from the file (an object "requirements" is
 * made when meta has none), and stays out when the file gives none. gangliond applies it to every
 * ONNX upload; the CLI before it uploads. */
int gn_requirements_opset_reconcile(json_t *meta, const char *file, int parse_rc, int64_t opset, const char *parse_msg,
				    gn_err *err) GN_WUR;

#endif
