/* The ONNX opset a model file declares, read from the file itself so that a release's
 * requirements can say it without anyone typing it (`ganglion models push`, `models opset`).
 *
 * An ONNX file is one protobuf message, ModelProto. Its opset_import (field 8) lists
 * OperatorSetIdProto entries {domain (1), version (2)}; the entry of the default domain ("" or its
 * alias "ai.onnx") is the opset the model's standard operators follow. The walk reads the top-level
 * fields only and skips every other field by its length, so the graph and its weights (field 7,
 * nearly all of the file) are never read: a multi-gigabyte model costs a few hundred small reads.
 * Everything is bounded by the file's own size; a truncated or garbage file is GN_EINVAL, never a
 * read past the end.
 *
 * The same walk runs on bytes fed as they arrive (gn_onnx_stream): gangliond reads an upload's
 * opset while it streams to the artifact store, in memory of a few kilobytes whatever its size.
 * opset_import (field 8) usually follows the graph, so the whole stream is fed; the graph's bytes
 * are only counted. */
#ifndef GN_ONNX_H
#define GN_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define GN_ONNX_OPSET_MAX 1000       /* the largest opset accepted (ONNX is in the twenties) */
#define GN_ONNX_MAX_FIELDS 1000000   /* top-level fields walked before giving up */
#define GN_ONNX_OPSET_ENTRY_MAX 4096 /* bytes of one opset_import entry */

/* Sets *opset to the default domain's opset of the ONNX model in the len bytes at data (the largest
 * if it is listed more than once). GN_ENOTFOUND: a well-formed message that declares no opset for
 * the default domain (an ai.onnx.ml-only model, or IR version 1 and 2, which had no opset_import).
 * GN_EINVAL: not a well-formed ModelProto (truncated, a field running past the end, a bad wire
 * type, an opset outside 1..GN_ONNX_OPSET_MAX). err says why. */
int gn_onnx_opset_buf(int64_t *opset, const void *data, size_t len, gn_err *err) GN_WUR;

/* The same for the regular file open on fd, read with pread (the file offset is not moved). */
int gn_onnx_opset_fd(int64_t *opset, int fd, gn_err *err) GN_WUR;

/* A walk over bytes fed in pieces of any size. */
typedef struct gn_onnx_stream gn_onnx_stream;

/* Returns a new walk at byte 0 (free with gn_onnx_stream_free). */
gn_onnx_stream *gn_onnx_stream_new(void);
/* Frees s; NULL is fine. */
void gn_onnx_stream_free(gn_onnx_stream *s);
/* Walks the next len bytes of the model. A failure is kept (and nothing after it read) for
 * gn_onnx_stream_finish to report. */
void gn_onnx_stream_feed(gn_onnx_stream *s, const void *data, size_t len);
/* Ends the walk: what gn_onnx_opset_buf says of all the bytes fed, with the same codes and messages
 * (a field cut off by the end is GN_EINVAL). */
int gn_onnx_stream_finish(gn_onnx_stream *s, int64_t *opset, gn_err *err) GN_WUR;

#endif
