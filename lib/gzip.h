/* gzip (RFC 1952) over zlib for request bodies: the agent compresses its telemetry batches, and
 * gangliond inflates them with a hard bound on the inflated size, so a small body that inflates to
 * gigabytes (a "zip bomb") costs no more memory than the bound. */
#ifndef GN_GZIP_H
#define GN_GZIP_H

#include "common.h"

/* Compresses len bytes of in into out (initialised by the caller) as one gzip member. */
int gn_gzip(gn_buf *out, const void *in, size_t len, gn_err *err) GN_WUR;

/* Inflates exactly one gzip member from in into out (initialised by the caller; NUL-terminated as
 * every gn_buf). More than max inflated bytes: GN_ETOOBIG, having held at most about max bytes.
 * Not gzip, corrupt, truncated, or followed by more bytes: GN_EINVAL. On failure out is emptied. */
int gn_gunzip(gn_buf *out, const void *in, size_t len, size_t max, gn_err *err) GN_WUR;

#endif
