/* HTTPS in gangliond (libmicrohttpd over GnuTLS): the server certificate chain and key, re-read on
 * SIGHUP without closing the listener; the cipher policy; and the optional requirement that every
 * client present a certificate signed by a given CA (mTLS), checked once per connection. */
#ifndef GD_HTTP_TLS_H
#define GD_HTTP_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "common.h"

struct gd_config;
struct MHD_Connection;
struct MHD_OptionItem;

/* Checks the TLS keys of c (without loading anything): tls-key-file goes with tls-cert-file,
 * tls-client-ca-file needs them, tls-required needs them, and tls-priorities parses. */
int http_tls_check_config(const struct gd_config *c, gn_err *err) GN_WUR;

/* Loads the certificate chain, key and client CA that c names (before http_start); a no-op when
 * tls-cert-file is empty. Fails, saying why, on an unreadable file, a file that holds no PEM
 * certificate or key, or a key that does not belong to the first certificate. */
int http_tls_init(const struct gd_config *c, gn_err *err) GN_WUR;

/* True once http_tls_init has loaded a certificate: the daemon is started with TLS. */
bool http_tls_enabled(void);

/* Fills items (room for 4) with the libmicrohttpd options of TLS, ended by MHD_OPTION_END; the
 * daemon needs MHD_USE_TLS as well. Call only when http_tls_enabled(). */
void http_tls_mhd_options(struct MHD_OptionItem *items);

/* On SIGHUP: re-reads the certificate and key files fresh names. New handshakes use them at once,
 * those in flight finish with the old ones; the listener is not touched. Fails (the running
 * certificate stays) when they do not load, or when fresh would turn TLS on or off (a restart
 * does that). The client CA and the cipher policy stay as they were at start. */
int http_tls_reload(const struct gd_config *fresh, gn_err *err) GN_WUR;

/* With tls-client-ca-file: 0 when the connection's client presented a certificate that verifies
 * against it; otherwise GN_EFORBIDDEN with why in err. Without it: always 0. */
int http_tls_client_check(struct MHD_Connection *conn, gn_err *err) GN_WUR;
/* True when tls-client-ca-file is in force. */
bool http_tls_client_required(void);

/* Frees every certificate loaded (at exit, after the daemon has stopped). */
void http_tls_cleanup(void);

#endif
