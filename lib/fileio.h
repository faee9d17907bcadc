/* Durable file writes: a file appears under its name complete or not at all, and survives a
 * power cut once the call returns; bounded reads of small files, and of a secret kept in a file.
 * Written once here for the server, the agent and the CLI. */
#ifndef GN_FILEIO_H
#define GN_FILEIO_H

#include "common.h"

/* Writes len bytes of data to path atomically: a temp file beside it, given exactly `mode` (the
 * umask does not apply), fsync, rename over path, fsync of the directory. On failure path is
 * unchanged and no temp file is left; GN_ERROR with the system's reason in err. */
int gn_file_write_atomic(const char *path, const void *data, size_t len, int mode, gn_err *err) GN_WUR;

/* Moves a file the caller has written (streamed) to final_path durably: fchmod(fd, mode) when
 * fd >= 0 and mode >= 0, fsync(fd) when fd >= 0 (pass -1 when the caller has synced it),
 * rename(tmp_path, final_path), fsync of final_path's directory.
 * Both paths must be on one file system. fd stays open and the caller's. On failure final_path is
 * unchanged and tmp_path is left for the caller to remove (or resume); GN_ERROR. */
int gn_file_commit(int fd, const char *tmp_path, const char *final_path, int mode, gn_err *err) GN_WUR;

/* Reads a secret (a token) kept in a file, so that it need not appear in a command line: at most
 * max bytes, surrounding whitespace removed, one word. *out is new. GN_EINVAL naming the file
 * when it cannot be read, is larger than max, is empty, or holds more than one word. */
int gn_secret_file_read(char **out, const char *path, size_t max, gn_err *err) GN_WUR;
/* Reads the whole regular file at path, at most max bytes, into *out (new, NUL-terminated after
 * *out_len bytes). GN_ENOTFOUND when it does not exist, GN_ETOOBIG when larger, GN_ERROR with the
 * system's reason otherwise. */
int gn_file_read(char **out, size_t *out_len, const char *path, size_t max, gn_err *err) GN_WUR;

#endif
