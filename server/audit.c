/* Writes audit rows; the table refuses UPDATE, DELETE and TRUNCATE (see 0001_init.sql). */
#include "audit.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "log.h"

/* device.enroll is written by the enrollment's own SQL (enroll.c), token.rename by migration 0009,
 * device.rename by migration 0010; rollout.KIND by rollouts.c's event(), one per rollout event
 * kind (and rollout.hold by its hold()). */
const char *const audit_actions[] = {
	"token.create",        "token.rename",      "token.revoke",        "enroll_token.create",
	"enroll_token.revoke", "device.enroll",     "device.update",       "device.decommission",
	"device.assign",       "device.unassign",   "device.conflict",     "device.rename",
	"model.publish",       "model.alias",       "model.alias_delete",  "model.yank",
	"model.unyank",        "tuf.key_rotate",    "tuf.root_import",     "tuf.targets_import",
	"tuf.role_publish",    "deployment.create", "deployment.update",   "deployment.delete",
	"rollout.start",       "rollout.stage",     "rollout.pin",         "rollout.complete",
	"rollout.rollback",    "rollout.pause",     "rollout.resume",      "rollout.promote",
	"rollout.abort",       "rollout.approve",   "rollout.hold",        "gitops.apply",
	"gitops.suspend",      "gitops.resume",     "alert.open",          "alert_rule.create",
	"alert.resolve",       "alert_rule.delete", "device.token_rotate", "device_token_key.rotate",
	"rollout.hold_back",
};
const size_t audit_nactions = GN_ARRAY_LEN(audit_actions);

bool audit_action_known(const char *action)
{
	for (size_t i = 0; i < audit_nactions; i++)
		if (strcmp(audit_actions[i], action) == 0)
			return true;
	return false;
}

static const db_stmt st_insert = {
	"audit_insert",
	"INSERT INTO audit_log (actor, token_id, action, object_type, object_id, request_id, detail)"
	" VALUES ($1, $2, $3, $4, $5, $6, coalesce($7::jsonb, '{}'))",
	7};

/* A filter matches: actor as written in the entry ("token:ci", "controller"), a token's name or a
 * token's id; action exactly, or its group ("token" for token.*); object as object_id or as
 * object_type/object_id, as `ganglion audit` shows it; since <= at < until. */
const db_stmt audit_list_stmt = {
	"audit_list",
	"SELECT jsonb_build_object('id', id, 'at', gn_ts(at), 'actor', actor, 'token_id', token_id,"
	" 'action', action, 'object_type', object_type, 'object_id', object_id, 'request_id', request_id,"
	" 'detail', detail)::text, id::text AS cursor FROM audit_log"
	" WHERE ($1::text IS NULL OR actor = $1 OR actor = 'token:' || $1 OR token_id::text = $1)"
	" AND ($2::text IS NULL OR action = $2 OR split_part(action, '.', 1) = $2)"
	" AND ($3::text IS NULL OR object_id = $3 OR object_type || '/' || coalesce(object_id, '') = $3)"
	" AND ($4::double precision IS NULL OR at >= to_timestamp($4::double precision))"
	" AND ($5::double precision IS NULL OR at < to_timestamp($5::double precision))"
	" AND ($6::bigint IS NULL OR id < $6::bigint) ORDER BY audit_log.id DESC LIMIT $7",
	7};

/* Reads n decimal digits at *s (advancing it) into out; false when they are not there. */
static bool digits(int *out, const char **s, int n)
{
	*out = 0;
	for (int i = 0; i < n; i++, (*s)++) {
		if (!isdigit((unsigned char)**s))
			return false;
		*out = *out * 10 + (**s - '0');
	}
	return true;
}

/* Parses an RFC 3339 date-time (or a date alone, at midnight UTC) into seconds since the epoch,
 * written into out as text with microseconds. False for anything else, a 30 February included. */
static bool time_parse(char out[24], const char *s)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, oh = 0, om = 0, sign = 0;
	long usec = 0;
	if (!digits(&y, &s, 4) || *s++ != '-' || !digits(&mo, &s, 2) || *s++ != '-' || !digits(&d, &s, 2))
		return false;
	if (*s) {
		if ((*s != 'T' && *s != 't' && *s != ' ') || (s++, !digits(&h, &s, 2)) || *s++ != ':' ||
		    !digits(&mi, &s, 2) || *s++ != ':' || !digits(&sec, &s, 2))
			return false;
		if (*s == '.') {
			int n = 0;
			for (s++; isdigit((unsigned char)*s); s++, n++)
				if (n < 6)
					usec = usec * 10 + (*s - '0');
			if (n == 0)
				return false;
			for (; n < 6; n++)
				usec *= 10;
		}
		if (*s == 'Z' || *s == 'z')
			s++;
		else if ((*s == '+' || *s == '-') && (sign = *s == '+' ? 1 : -1, s++, digits(&oh, &s, 2)) &&
			 *s++ == ':' && digits(&om, &s, 2) && oh < 24 && om < 60)
			;
		else
			return false;
		if (*s)
			return false;
	}
	struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi, .tm_sec = sec};
	time_t t = timegm(&tm);
	/* timegm normalises (31 April becomes 1 May): a date it had to change was not a date. */
	if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59 || tm.tm_mday != d || tm.tm_mon != mo - 1)
		return false;
	t -= (time_t)sign * (oh * 3600 + om * 60);
	snprintf(out, 24, "%lld.%06ld", (long long)t, usec);
	return true;
}

/* Checks a text filter: absent, or 1 to 200 characters. */
static int text_filter(const char *v, const char *name, gn_err *err)
{
	if (v && (!*v || strlen(v) > 200))
		return gn_err_set(err, GN_EINVAL, "query parameter '%s' must be 1 to 200 characters", name);
	return 0;
}

int audit_filter_parse(struct audit_filter *out, const char *actor, const char *action, const char *object,
		       const char *since, const char *until, gn_err *err)
{
	int error;
	const char *const names[] = {"since", "until"}, *const vals[] = {since, until};
	char *const bufs[] = {out->since_buf, out->until_buf};
	memset(out, 0, sizeof(*out));
	if ((error = text_filter(actor, "actor", err)) || (error = text_filter(action, "action", err)) ||
	    (error = text_filter(object, "object", err)))
		return error;
	out->actor = actor;
	out->action = action;
	out->object = object;
	for (int i = 0; i < 2; i++)
		if (vals[i] && !time_parse(bufs[i], vals[i]))
			return gn_err_set(err, GN_EINVAL,
					  "query parameter '%s' must be an RFC 3339 time such as 2026-01-02T15:04:05Z "
					  "(or a date, 2026-01-02), not '%.64s'",
					  names[i], vals[i]);
	out->since = since ? out->since_buf : NULL;
	out->until = until ? out->until_buf : NULL;
	if (since && until && strtod(out->since_buf, NULL) > strtod(out->until_buf, NULL))
		return gn_err_set(err, GN_EINVAL, "query parameter 'since' (%.64s) is after 'until' (%.64s)", since,
				  until);
	return 0;
}

int audit_write(db_conn *c, const struct gd_actor *who, const char *action, const char *object_type,
		const char *object_id, json_t *detail, gn_err *err)
{
	char actor[128];
	char *d = detail ? gn_json_dump(detail) : NULL;
	/* A bug, which tests/unit/server/test_audit catches before a release: logged loudly, but the
	 * entry is still written -- an undocumented action name must not lose an audit record or stop
	 * the server. Add a new action to audit_actions, API.md and openapi.yaml. */
	if (!audit_action_known(action))
		gn_log(GN_LOG_ERROR, "event=bug msg=\"audit action not in audit_actions\" action=%s", action);
	actor_label(actor, sizeof(actor), who);
	const char *p[] = {actor,     who->kind == GD_ACTOR_TOKEN ? who->id : NULL, action, object_type,
			   object_id, who->request_id[0] ? who->request_id : NULL,  d};
	int rc = db_exec(NULL, c, &st_insert, p, err);
	free(d);
	json_decref(detail);
	return rc;
}

int audit_change(PGresult **out, db_conn *c, const struct gd_actor *who, const db_stmt *st, const char *const *params,
		 const char *missing, const char *action, const char *object_type, const char *object_id,
		 json_t *detail, gn_err *err)
{
	PGresult *res = NULL;
	int error;
	*out = NULL;
	if ((error = db_tx_begin(c, err)) || (error = db_exec(&res, c, st, params, err)))
		goto out;
	if (PQntuples(res) == 0) {
		error = gn_err_set(err, GN_ENOTFOUND, "%s", missing);
		goto out;
	}
	error = audit_write(c, who, action, object_type, object_id, detail, err);
	detail = NULL;
	if (!error)
		error = db_tx_commit(c, err);
out:
	json_decref(detail);
	if (error) {
		db_tx_rollback(c);
		PQclear(res);
		return error;
	}
	*out = res;
	return 0;
}
