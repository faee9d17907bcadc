/* Signing a release of a model version with CI's keys, for an image repository whose targets
 * are offline (docs/DESIGN.md, "Trust model"). */
#ifndef CLI_RELEASE_H
#define CLI_RELEASE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cli.h"

struct cli_signers;

/* Loads the signers a command line names: each --sign-key (an Ed25519 private key, PEM) and
 * --signer-cmd. *out is NULL when it names none. CLI_EUSAGE for a key that does not load. */
int cli_signers_load(struct cli_signers **out, const cli_args *args, gn_err *err) GN_WUR;
void cli_signers_free(struct cli_signers *s);

/* Releases the version of model that meta (the metadata uploaded) describes, whose file has the
 * given SHA-256 and length: gets the server's draft of the next version of the delegated role that
 * covers it, checks (gn_tufr_draft_check) that it is the current version plus exactly that file at
 * models/MODEL/VERSION/FILE, with the custom fields the server derives from meta, the current
 * delegations and a bounded expiry, and nothing else (a draft without a current version only when
 * first_release), checks the current version's signature by the local keys, signs it with every
 * signer and uploads it; a 409 (another release got in first) starts again from a new draft, a few
 * times. *out: the server's answer {"role", "version"} (new). */
int cli_release_sign(json_t **out, const cli_ctx *ctx, const struct cli_signers *s, const char *model,
		     const json_t *meta, const char *sha256, uint64_t len, bool first_release, gn_err *err) GN_WUR;

#endif
