/* GitOps: the fleet's desired state (deployments, model aliases) kept in a git repository. A sync
 * fetches the configured branch, reads and checks every document of its head commit
 * (lib/gitops.c), checks what needs the server (models and versions that exist, the rollout
 * strategy through strategy_parse, overlaps through the deployments module), plans the difference
 * with what the server holds, and applies it in one transaction as the actor "gitops" with the
 * commit's id: on every object it manages (gitops_objects) and on every audit row. A commit is
 * applied whole or not at all; a refused one leaves the last applied state and its errors, with
 * file and line, in the status. Objects git manages are read-only through the API (a trigger,
 * migrations/0011_gitops.sql) unless sync is suspended; changes made then show as drift and the
 * next sync after resuming undoes them. Domain layer. */
#ifndef GD_GITOPS_H
#define GD_GITOPS_H

#include <jansson.h>

#include "actor.h"
#include "config.h"
#include "db.h"

/* Checks the gitops-* settings (at start-up and before a reload is taken): URL forms, readable
 * files, an allowed-signers file that parses, a webhook secret of at least 16 bytes, and no
 * setting given that would do nothing (GitOps off). GN_EINVAL naming the setting. */
int gitops_check_config(const struct gd_config *cfg, gn_err *err) GN_WUR;

/* Syncs now: fetches the branch and applies its head commit unless the server holds it already
 * (force: re-plan anyway; allow_rewrite: apply a head that does not descend from the applied
 * commit, which is otherwise refused: a force push could bring back an old signed state). Records
 * the outcome in the status; a refused or unreachable commit is not an error of the call (see the
 * status), a sync already running elsewhere is GN_ECONFLICT, GitOps off or suspended GN_ECONFLICT
 * too. by names who asked ("poll", "webhook", a token label), for the audit row. Opens its own
 * transactions. *out (may be NULL) gets the status afterwards (new). */
int gitops_sync(json_t **out, db_conn *c, const struct gd_config *cfg, const char *by, bool force, bool allow_rewrite,
		gn_err *err) GN_WUR;
/* The periodic job: gitops_sync as "poll" when GitOps is configured and not suspended; refusals
 * and fetch failures are in the status (and logged), not errors. */
int gitops_poll(db_conn *c, const struct gd_config *cfg, gn_err *err) GN_WUR;
/* A dry run of ref (NULL: the configured branch), e.g. a pull request's branch: *out (new) is
 * {"ref", "commit", "summary", "signer", "rewritten", "changes", "errors"}; nothing is applied. */
int gitops_plan(json_t **out, db_conn *c, const struct gd_config *cfg, const char *ref, gn_err *err) GN_WUR;
/* The status (new): settings, the applied commit and its signer, the head last seen, the last
 * errors with file and line, the pending plan, drift, and the objects git manages. A read. */
int gitops_status(json_t **out, db_conn *c, const struct gd_config *cfg, gn_err *err) GN_WUR;
/* Suspends or resumes sync; audited. Resuming wakes the sync, which re-plans (undoing drift).
 * GN_ECONFLICT when already so. Opens its own transaction. */
int gitops_suspend(json_t **out, db_conn *c, const struct gd_actor *who, const struct gd_config *cfg, bool suspend,
		   gn_err *err) GN_WUR;
/* A push notification: checks the signature header against gitops-webhook-secret-file (GitHub
 * and Gitea: X-Hub-Signature-256 "sha256=HEX" or X-Gitea-Signature "HEX", an HMAC-SHA256 of the
 * body; GitLab: X-Gitlab-Token, the secret itself) and wakes the sync on every replica. The body is
 * never used otherwise: what is applied comes from git. GN_ENOTFOUND when no secret is configured,
 * GN_EAUTH for a missing or wrong signature. */
int gitops_hook(db_conn *c, const struct gd_config *cfg, const char *hub_sig, const char *gitea_sig,
		const char *gitlab_token, const char *body, size_t len, gn_err *err) GN_WUR;

#endif
