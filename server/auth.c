/* Token authentication and scope checks. */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "device_tokens.h"
#include "log.h"

static const struct {
	const char *name;
	unsigned bit;
} scope_names[] = {
	{"admin", GD_SCOPE_ADMIN},
	{"operator", GD_SCOPE_OPERATOR},
	{"ci", GD_SCOPE_CI},
	{"read", GD_SCOPE_READ},
};

void auth_hash_token(char out[GN_SHA256_HEX_LEN + 1], const char *token)
{
	gn_sha256_hex(out, token, strlen(token));
}

int auth_scope_parse(unsigned *out, const char *name)
{
	for (size_t i = 0; i < GN_ARRAY_LEN(scope_names); i++) {
		if (strcmp(scope_names[i].name, name) == 0) {
			*out = scope_names[i].bit;
			return 0;
		}
	}
	return GN_EINVAL;
}

/* Looks the token up and, at most once a minute, records its use (to keep writes off the hot path). */
static const db_stmt st_api_token = {
	"auth_api_token",
	"WITH u AS (UPDATE api_tokens SET last_used_at = now() WHERE hash = $1 AND revoked_at IS NULL"
	"  AND (expires_at IS NULL OR expires_at > now())"
	"  AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds'))"
	" SELECT id, name, array_to_string(scopes, ','),"
	"  (expires_at IS NOT NULL AND expires_at <= now()), revoked_at IS NOT NULL"
	" FROM api_tokens WHERE hash = $1",
	1};

static const db_stmt st_device_token = {"auth_device_token",
					"SELECT s.device_id, d.status, s.expires_at <= now() FROM device_sessions s"
					" JOIN devices d ON d.id = s.device_id WHERE s.hash = $1",
					1};

/* Forgets who the actor was (not the request it belongs to). */
static void clear_identity(struct gd_actor *a)
{
	a->kind = GD_ACTOR_NONE;
	a->id[0] = a->name[0] = '\0';
	a->scopes = 0;
}

/* The answer to a signed device token's verdict (0 when it may pass). */
static int signed_verdict(enum device_token_verdict v, gn_err *err)
{
	if (v == DEVICE_TOKEN_DEAD)
		return gn_err_set(err, GN_EAUTH, "device has been decommissioned");
	if (v == DEVICE_TOKEN_REVOKED)
		return gn_err_set(err, GN_EAUTH, "device token has been revoked; authenticate again");
	if (v == DEVICE_TOKEN_KEY_RETIRED)
		return gn_err_set(err, GN_EAUTH, "device token was signed with a retired key; authenticate again");
	return 0;
}

/* The Bearer token of an Authorization header value, or NULL (err set) when there is none. */
static const char *bearer(const char *header, gn_err *err)
{
	if (!header || !*header) {
		gn_err_set(err, GN_EAUTH, "missing Authorization: Bearer token");
		return NULL;
	}
	if (strncasecmp(header, "Bearer ", 7) != 0) {
		gn_err_set(err, GN_EAUTH, "Authorization must use the Bearer scheme");
		return NULL;
	}
	const char *token = header + 7;
	while (*token == ' ')
		token++;
	if (strlen(token) > 200) {
		gn_err_set(err, GN_EAUTH, "unknown token");
		return NULL;
	}
	return token;
}

int auth_authenticate_memory(struct gd_actor *out, bool *out_done, const char *header, gn_err *err)
{
	enum device_token_verdict v;
	struct device_token t;
	int error;
	clear_identity(out);
	*out_done = false;
	const char *token = bearer(header, err);
	if (!token) {
		*out_done = true;
		return err->code;
	}
	if (!device_tokens_is_signed(token))
		return 0;
	error = device_tokens_check(&v, &t, token, gn_now(), err);
	if (!error && (v == DEVICE_TOKEN_UNKNOWN || v == DEVICE_TOKEN_NO_KEY))
		return 0; /* the database decides */
	*out_done = true;
	if (!error)
		error = signed_verdict(v, err);
	if (error) {
		clear_identity(out);
		return error;
	}
	snprintf(out->id, sizeof(out->id), "%s", t.device_id);
	out->kind = GD_ACTOR_DEVICE;
	out->scopes = GD_SCOPE_DEVICE;
	return 0;
}

int auth_authenticate(struct gd_actor *out, db_conn *c, const char *header, gn_err *err)
{
	int error = 0;
	PGresult *res = NULL;
	char hash[GN_SHA256_HEX_LEN + 1];
	clear_identity(out);
	const char *token = bearer(header, err);
	if (!token)
		return err->code;
	auth_hash_token(hash, token);
	const char *p[] = {hash};

	if (strncmp(token, AUTH_API_PREFIX, 4) == 0) {
		if ((error = db_exec(&res, c, &st_api_token, p, err)))
			goto out;
		if (PQntuples(res) != 1) {
			error = gn_err_set(err, GN_EAUTH, "unknown token");
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
			error = gn_err_set(err, GN_EAUTH, "token has been revoked");
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 3), "t") == 0) {
			error = gn_err_set(err, GN_EAUTH, "token has expired");
			goto out;
		}
		out->kind = GD_ACTOR_TOKEN;
		snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, 0, 0));
		snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(res, 0, 1));
		char *scopes = gn_strdup(PQgetvalue(res, 0, 2)), *save = NULL;
		for (char *s = strtok_r(scopes, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
			unsigned bit;
			if (auth_scope_parse(&bit, s) == 0)
				out->scopes |= bit;
		}
		free(scopes);
	} else if (device_tokens_is_signed(token)) {
		enum device_token_verdict v;
		struct device_token t;
		if ((error = device_tokens_check_db(&v, &t, c, token, gn_now(), err)) ||
		    (error = signed_verdict(v, err)))
			goto out;
		snprintf(out->id, sizeof(out->id), "%s", t.device_id);
		out->kind = GD_ACTOR_DEVICE;
		out->scopes = GD_SCOPE_DEVICE;
	} else if (strncmp(token, AUTH_DEVICE_PREFIX, 4) == 0) {
		/* A token from before signed tokens (migrations/0013): looked up until it expires. */
		if ((error = db_exec(&res, c, &st_device_token, p, err)))
			goto out;
		if (PQntuples(res) != 1) {
			error = gn_err_set(err, GN_EAUTH, "unknown or revoked device token");
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 1), "active") != 0) {
			error = gn_err_set(err, GN_EAUTH, "device has been decommissioned");
			goto out;
		}
		if (strcmp(PQgetvalue(res, 0, 2), "t") == 0) {
			error = gn_err_set(err, GN_EAUTH, "device token has expired; authenticate again");
			goto out;
		}
		out->kind = GD_ACTOR_DEVICE;
		out->scopes = GD_SCOPE_DEVICE;
		snprintf(out->id, sizeof(out->id), "%s", PQgetvalue(res, 0, 0));
	} else {
		error = gn_err_set(err, GN_EAUTH, "unknown token");
	}
out:
	PQclear(res);
	if (error)
		clear_identity(out);
	return error;
}

int auth_allows(const struct gd_actor *auth, unsigned scope, gn_err *err)
{
	if (auth->kind == GD_ACTOR_DEVICE) {
		if (scope & GD_SCOPE_DEVICE)
			return 0;
		return gn_err_set(err, GN_EFORBIDDEN,
				  "device tokens only open /v1/agent endpoints, artifacts and TUF metadata");
	}
	if (scope == GD_SCOPE_DEVICE)
		return gn_err_set(err, GN_EFORBIDDEN, "this endpoint is for devices; use a device token");
	if (auth->scopes & GD_SCOPE_ADMIN)
		return 0;
	/* read is implied by every other API scope. */
	if ((scope & GD_SCOPE_READ) && (auth->scopes & (GD_SCOPE_READ | GD_SCOPE_OPERATOR | GD_SCOPE_CI)))
		return 0;
	if (auth->scopes & scope & (GD_SCOPE_OPERATOR | GD_SCOPE_CI))
		return 0;
	gn_buf need;
	gn_buf_init(&need);
	for (size_t i = 0; i < GN_ARRAY_LEN(scope_names); i++)
		if (scope & scope_names[i].bit)
			gn_buf_printf(&need, "%s'%s'", need.len ? " or " : "", scope_names[i].name);
	if (!need.len)
		gn_buf_puts(&need, "'admin'");
	gn_err_set(err, GN_EFORBIDDEN, "this token lacks the %s scope", need.data);
	gn_buf_cleanup(&need);
	return GN_EFORBIDDEN;
}

static const db_stmt st_has_admin = {"auth_has_admin",
				     "SELECT 1 FROM api_tokens WHERE 'admin' = ANY(scopes) AND revoked_at IS NULL"
				     " AND (expires_at IS NULL OR expires_at > now()) LIMIT 1",
				     0};
static const db_stmt st_create_admin = {
	"auth_create_admin",
	"WITH t AS (INSERT INTO api_tokens (name, hash, scopes) VALUES ('admin', $1, ARRAY['admin']) RETURNING id)"
	" INSERT INTO audit_log (actor, action, object_type, object_id, detail)"
	" SELECT 'gangliond', 'token.create', 'token', t.id::text, '{\"bootstrap\":true}' FROM t",
	1};

int auth_bootstrap_admin(db_conn *c, const char *data_dir, gn_err *err)
{
	int error = 0;
	PGresult *res = NULL;
	char *token = NULL, *path = NULL, *data = NULL;
	char hash[GN_SHA256_HEX_LEN + 1];

	/* Replicas starting together must not both mint a token. */
	if ((error = db_lock_session(c, DB_LOCK_ADMIN_TOKEN, err)))
		return error;
	if ((error = db_exec(&res, c, &st_has_admin, NULL, err)))
		goto out;
	if (PQntuples(res) > 0)
		goto out;
	if (!(token = gn_token_new(AUTH_API_PREFIX, err))) {
		error = GN_ERROR;
		goto out;
	}
	path = gn_asprintf("%s/admin.token", data_dir);
	data = gn_asprintf("%s\n", token);
	/* Write the file first: a token in the database that nobody can read would lock everyone out. */
	if ((error = gn_file_write_atomic(path, data, strlen(data), 0600, err)))
		goto out;
	auth_hash_token(hash, token);
	const char *p[] = {hash};
	if ((error = db_exec(NULL, c, &st_create_admin, p, err)))
		goto out;
	gn_log(GN_LOG_INFO, "event=admin_token_created file=%s", path);
out:
	db_unlock_session(c, DB_LOCK_ADMIN_TOKEN);
	PQclear(res);
	free(token);
	free(path);
	free(data);
	return error;
}
