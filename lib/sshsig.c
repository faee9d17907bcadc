/* SSHSIG signatures and allowed-signers files (OpenSSH's PROTOCOL.sshsig), Ed25519 only. */
#include "sshsig.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "crypto.h"
#include "fileio.h"

#define ARMOR_BEGIN "-----BEGIN SSH SIGNATURE-----"
#define ARMOR_END "-----END SSH SIGNATURE-----"
#define MAGIC "SSHSIG"

/* Decodes len bytes of padded base64 (no whitespace) into *out (new). */
static int b64_decode(unsigned char **out, size_t *out_len, const char *s, size_t len)
{
	*out = NULL;
	if (len == 0 || len % 4 || len > 1 << 20)
		return -1;
	unsigned char *buf = gn_malloc(len / 4 * 3 + 1);
	int got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (got < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	*out_len = (size_t)got - (s[len - 1] == '=') - (s[len - 2] == '=');
	return 0;
}

/* "SHA256:" and the unpadded base64 of the SHA-256 of a public key blob, as ssh-keygen -l shows. */
static void fingerprint(char out[64], const unsigned char *blob, size_t len)
{
	unsigned char md[32];
	unsigned char b64[48];
	EVP_Digest(blob, len, md, NULL, EVP_sha256(), NULL);
	int n = EVP_EncodeBlock(b64, md, sizeof(md));
	while (n > 0 && b64[n - 1] == '=')
		n--;
	snprintf(out, 64, "SHA256:%.*s", n, (const char *)b64);
}

/* Reading SSH wire encoding: uint32 big-endian, and strings prefixed by their uint32 length. */
struct rd {
	const unsigned char *p;
	size_t n;
};

static int rd_u32(struct rd *r, uint32_t *out)
{
	if (r->n < 4)
		return -1;
	*out = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
	r->p += 4;
	r->n -= 4;
	return 0;
}

static int rd_str(struct rd *r, struct rd *out)
{
	uint32_t n;
	if (rd_u32(r, &n) || n > r->n)
		return -1;
	*out = (struct rd){r->p, n};
	r->p += n;
	r->n -= n;
	return 0;
}

static bool rd_is(const struct rd *s, const char *lit)
{
	return s->n == strlen(lit) && memcmp(s->p, lit, s->n) == 0;
}

/* Reads a blob of the form string(type) string(data) with type "ssh-ed25519" and 32- or 64-byte data. */
static int ed25519_part(unsigned char *out, size_t want, struct rd blob, char *type, size_t typelen)
{
	struct rd t, d;
	if (rd_str(&blob, &t) || rd_str(&blob, &d))
		return -1;
	snprintf(type, typelen, "%.*s", (int)(t.n > 60 ? 60 : t.n), (const char *)t.p);
	if (!rd_is(&t, "ssh-ed25519") || d.n != want || blob.n != 0)
		return -1;
	memcpy(out, d.p, want);
	return 0;
}

/* --- allowed signers -------------------------------------------------------------------------- */

/* Splits the next space-separated token off *p; double quotes protect spaces. NULL at the end;
 * *unbalanced is set for a quote left open. */
static char *token(char **p, bool *unbalanced)
{
	char *s = *p;
	bool q = false;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return NULL;
	char *start = s;
	for (; *s && (q || (*s != ' ' && *s != '\t')); s++)
		if (*s == '"')
			q = !q;
	if (*s)
		*s++ = '\0';
	*p = s;
	*unbalanced = q;
	return start;
}

static char *unquote_dup(const char *s)
{
	size_t n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"')
		return gn_strndup(s + 1, n - 2);
	return gn_strdup(s);
}

static bool is_key_type(const char *s)
{
	return strncmp(s, "ssh-", 4) == 0 || strncmp(s, "ecdsa-", 6) == 0 || strncmp(s, "sk-", 3) == 0;
}

/* YYYYMMDD[HHMM[SS]][Z]: local time, or UTC with Z (as ssh-keygen reads it). */
static int parse_time(int64_t *out, const char *s)
{
	struct tm tm;
	size_t n = strlen(s);
	bool utc = n && s[n - 1] == 'Z';
	int f[6] = {0};
	if (utc)
		n--;
	if (n != 8 && n != 12 && n != 14)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return -1;
	static const int width[] = {4, 2, 2, 2, 2, 2};
	for (size_t i = 0, at = 0; at < n; at += (size_t)width[i], i++)
		for (int k = 0; k < width[i]; k++)
			f[i] = f[i] * 10 + (s[at + (size_t)k] - '0');
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = f[0] - 1900;
	tm.tm_mon = f[1] - 1;
	tm.tm_mday = f[2];
	tm.tm_hour = f[3];
	tm.tm_min = f[4];
	tm.tm_sec = f[5];
	tm.tm_isdst = -1;
	if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 || f[4] > 59 || f[5] > 60)
		return -1;
	*out = (int64_t)(utc ? timegm(&tm) : mktime(&tm));
	return 0;
}

static int parse_options(struct gn_ssh_signer *s, char *opts, int line, gn_err *err)
{
	char *save = NULL;
	/* Commas inside quotes (namespaces="git,file") belong to the value: split by hand. */
	for (char *o = opts; o && *o; o = save) {
		bool q = false;
		char *e = o;
		for (; *e && (q || *e != ','); e++)
			if (*e == '"')
				q = !q;
		save = *e ? e + 1 : NULL;
		*e = '\0';
		char *eq = strchr(o, '=');
		char *val = eq ? unquote_dup(eq + 1) : NULL;
		if (eq)
			*eq = '\0';
		int bad = 0;
		if (strcasecmp(o, "namespaces") == 0 && val) {
			free(s->namespaces);
			s->namespaces = val;
			val = NULL;
		} else if (strcasecmp(o, "valid-after") == 0 && val)
			bad = parse_time(&s->valid_after, val);
		else if (strcasecmp(o, "valid-before") == 0 && val)
			bad = parse_time(&s->valid_before, val);
		else if (strcasecmp(o, "cert-authority") == 0) {
			free(val);
			return gn_err_set(err, GN_EINVAL,
					  "line %d: cert-authority is not supported; list each signer's own key", line);
		} else {
			free(val);
			return gn_err_set(err, GN_EINVAL, "line %d: unknown option '%.60s'", line, o);
		}
		free(val);
		if (bad)
			return gn_err_set(err, GN_EINVAL, "line %d: %s must be YYYYMMDD[HHMM[SS]][Z]", line, o);
	}
	return 0;
}

static int parse_line(struct gn_ssh_signer *s, char *text, int line, gn_err *err)
{
	bool open = false;
	char *p = text, *principals = token(&p, &open), *second = token(&p, &open), *type = second;
	char *opts = NULL;
	if (second && !is_key_type(second)) {
		opts = second;
		type = token(&p, &open);
	}
	char *key = token(&p, &open);
	if (open)
		return gn_err_set(err, GN_EINVAL, "line %d: a double quote is not closed", line);
	if (!principals || !type || !key)
		return gn_err_set(err, GN_EINVAL, "line %d: expected PRINCIPALS [OPTIONS] KEYTYPE KEY", line);
	s->line = line;
	s->principals = unquote_dup(principals);
	if (opts && parse_options(s, opts, line, err))
		return GN_EINVAL;
	if (strcmp(type, "ssh-ed25519") != 0)
		return gn_err_set(err, GN_EINVAL, "line %d: key type %.60s is not supported (only ssh-ed25519)", line,
				  type);
	unsigned char *blob = NULL;
	size_t blen = 0;
	char t[64];
	int bad = b64_decode(&blob, &blen, key, strlen(key)) ||
		  ed25519_part(s->key, GN_SSH_ED25519_LEN, (struct rd){blob, blen}, t, sizeof(t));
	free(blob);
	if (bad)
		return gn_err_set(err, GN_EINVAL, "line %d: the key is not a valid ssh-ed25519 public key", line);
	return 0;
}

int gn_allowed_signers_parse(gn_allowed_signers *out, const char *text, size_t len, gn_err *err)
{
	char *copy = gn_strndup(text, len);
	int error = 0, line = 0;
	memset(out, 0, sizeof(*out));
	if (strlen(copy) != len) {
		free(copy);
		return gn_err_set(err, GN_EINVAL, "the allowed signers file contains a NUL byte");
	}
	for (char *l = copy, *nl; l && !error; l = nl) {
		if ((nl = strchr(l, '\n')))
			*nl++ = '\0';
		line++;
		l[strcspn(l, "\r")] = '\0';
		char *s = l + strspn(l, " \t");
		if (!*s || *s == '#')
			continue;
		out->v = gn_realloc(out->v, (out->n + 1) * sizeof(*out->v));
		memset(&out->v[out->n], 0, sizeof(out->v[0]));
		error = parse_line(&out->v[out->n++], s, line, err);
	}
	free(copy);
	if (!error && out->n == 0)
		error = gn_err_set(err, GN_EINVAL, "the allowed signers file lists no key");
	return error;
}

int gn_allowed_signers_load(gn_allowed_signers *out, const char *path, gn_err *err)
{
	char *text = NULL;
	size_t len = 0;
	gn_err e;
	memset(out, 0, sizeof(*out));
	if (gn_file_read(&text, &len, path, 1 << 20, &e))
		return gn_err_set(err, GN_EINVAL, "allowed signers %s: %s", path, e.msg);
	int error = gn_allowed_signers_parse(out, text, len, &e);
	free(text);
	if (error)
		return gn_err_set(err, GN_EINVAL, "allowed signers %s: %s", path, e.msg);
	return 0;
}

void gn_allowed_signers_cleanup(gn_allowed_signers *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].principals);
		free(s->v[i].namespaces);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* --- signatures ------------------------------------------------------------------------------- */

/* The base64 between the armor lines, whitespace removed, into *out (new). */
static int unarmor(unsigned char **out, size_t *out_len, const char *a, size_t n)
{
	char *text = gn_strndup(a, n);
	char *b = strstr(text, ARMOR_BEGIN), *e = b ? strstr(b, ARMOR_END) : NULL;
	int rc = -1;
	if (b && e) {
		size_t k = 0;
		for (char *p = b + strlen(ARMOR_BEGIN); p < e; p++)
			if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
				text[k++] = *p; /* k never passes p: compacting in place */
		rc = b64_decode(out, out_len, text, k);
	}
	free(text);
	return rc;
}

static void put_str(gn_buf *b, const void *p, size_t n)
{
	unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8),
				(unsigned char)n};
	gn_buf_append(b, len, 4);
	gn_buf_append(b, p, n);
}

struct sshsig {
	struct rd pubkey, ns, reserved, hash, sig;
};

static int sshsig_parse(struct sshsig *out, const unsigned char *blob, size_t len)
{
	struct rd r = {blob, len};
	uint32_t version;
	if (len < 6 || memcmp(blob, MAGIC, 6) != 0)
		return -1;
	r.p += 6;
	r.n -= 6;
	if (rd_u32(&r, &version) || version != 1 || rd_str(&r, &out->pubkey) || rd_str(&r, &out->ns) ||
	    rd_str(&r, &out->reserved) || rd_str(&r, &out->hash) || rd_str(&r, &out->sig) || r.n != 0)
		return -1;
	return 0;
}

/* OpenSSH's pattern match: '*' any run, '?' any one character, case folded when fold. */
static bool glob_match(const char *p, const char *s, bool fold)
{
	for (; *p; p++, s++) {
		if (*p == '*') {
			for (;; s++) {
				if (glob_match(p + 1, s, fold))
					return true;
				if (!*s)
					return false;
			}
		}
		if (!*s || (*p != '?' && (fold ? tolower((unsigned char)*p) != tolower((unsigned char)*s) : *p != *s)))
			return false;
	}
	return !*s;
}

/* True when pattern-list (ssh's comma-separated patterns, '!' negating) admits s. */
static bool patterns_allow(const char *list, const char *s)
{
	char *copy = gn_strdup(list), *save = NULL;
	bool yes = false, no = false;
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		bool neg = *p == '!';
		if (glob_match(neg ? p + 1 : p, s, false))
			*(neg ? &no : &yes) = true;
	}
	free(copy);
	return yes && !no;
}

/* Finds a line that lists key and allows ns at time at; *out_listed tells whether any lists key. */
static const struct gn_ssh_signer *find_signer(bool *out_listed, const gn_allowed_signers *allowed,
					       const unsigned char key[GN_SSH_ED25519_LEN], const char *ns, int64_t at)
{
	*out_listed = false;
	for (size_t i = 0; i < allowed->n; i++) {
		const struct gn_ssh_signer *s = &allowed->v[i];
		if (memcmp(s->key, key, GN_SSH_ED25519_LEN) != 0)
			continue;
		*out_listed = true;
		if ((!s->namespaces || patterns_allow(s->namespaces, ns)) &&
		    (!s->valid_after || at >= s->valid_after) && (!s->valid_before || at < s->valid_before))
			return s;
	}
	return NULL;
}

int gn_sshsig_verify(char **out_signer, const gn_allowed_signers *allowed, const char *ns, int64_t at,
		     const char *armored, size_t alen, const void *msg, size_t len, gn_err *err)
{
	unsigned char *blob = NULL, key[GN_SSH_ED25519_LEN], sig[GN_ED25519_SIG_LEN], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char type[64] = "", fp[64];
	struct sshsig s;
	size_t blen = 0;
	gn_buf signed_data;
	bool listed;
	int error = 0;
	*out_signer = NULL;
	gn_buf_init(&signed_data);
	if (unarmor(&blob, &blen, armored, alen) || sshsig_parse(&s, blob, blen)) {
		error = gn_err_set(err, GN_EINVAL, "the signature is not an SSH signature (SSHSIG)");
		goto out;
	}
	fingerprint(fp, s.pubkey.p, s.pubkey.n);
	if (ed25519_part(key, sizeof(key), s.pubkey, type, sizeof(type)) ||
	    ed25519_part(sig, sizeof(sig), s.sig, type, sizeof(type))) {
		error = gn_err_set(err, GN_EINVAL, "signed with a %s key (%s); only ssh-ed25519 is supported",
				   *type ? type : "malformed", fp);
		goto out;
	}
	if (!rd_is(&s.ns, ns)) {
		error = gn_err_set(err, GN_EAUTH, "the signature is for namespace '%.*s', not '%s'",
				   (int)(s.ns.n > 40 ? 40 : s.ns.n), (const char *)s.ns.p, ns);
		goto out;
	}
	const EVP_MD *h = rd_is(&s.hash, "sha512") ? EVP_sha512() : rd_is(&s.hash, "sha256") ? EVP_sha256() : NULL;
	if (!h) {
		error = gn_err_set(err, GN_EINVAL, "unsupported signature hash '%.*s'",
				   (int)(s.hash.n > 20 ? 20 : s.hash.n), (const char *)s.hash.p);
		goto out;
	}
	const struct gn_ssh_signer *who = find_signer(&listed, allowed, key, ns, at);
	if (!who) {
		error = gn_err_set(err, GN_EAUTH,
				   listed ? "key %s is in the allowed signers file, but not for namespace '%s' at the "
					    "commit's time"
					  : "signed by key %s, which the allowed signers file does not list",
				   fp, ns);
		goto out;
	}
	EVP_Digest(msg, len, md, &mdlen, h, NULL);
	gn_buf_append(&signed_data, MAGIC, 6);
	put_str(&signed_data, s.ns.p, s.ns.n);
	put_str(&signed_data, s.reserved.p, s.reserved.n);
	put_str(&signed_data, s.hash.p, s.hash.n);
	put_str(&signed_data, md, mdlen);
	gn_err e;
	if (gn_ed25519_verify(key, signed_data.data, signed_data.len, sig, &e)) {
		error = gn_err_set(err, GN_EAUTH,
				   "the signature by %s does not verify: the commit differs from what was "
				   "signed",
				   fp);
		goto out;
	}
	*out_signer = gn_asprintf("%s (%s)", who->principals, fp);
out:
	free(blob);
	gn_buf_cleanup(&signed_data);
	return error;
}

/* --- known hosts ---------------------------------------------------------------------------- */

/* True when a hashed name |1|SALT|HASH is HMAC-SHA1(SALT, name). */
static bool hashed_match(const char *pattern, const char *name)
{
	char *copy = gn_strdup(pattern + 3), *bar = strchr(copy, '|');
	unsigned char *salt = NULL, *hash = NULL, mac[EVP_MAX_MD_SIZE];
	size_t slen = 0, hlen = 0;
	unsigned int mlen = 0;
	bool yes = false;
	if (bar) {
		*bar = '\0';
		if (!b64_decode(&salt, &slen, copy, strlen(copy)) &&
		    !b64_decode(&hash, &hlen, bar + 1, strlen(bar + 1)) &&
		    HMAC(EVP_sha1(), salt, (int)slen, (const unsigned char *)name, strlen(name), mac, &mlen) &&
		    mlen == hlen)
			yes = gn_consttime_eq(mac, hash, hlen);
	}
	free(salt);
	free(hash);
	free(copy);
	return yes;
}

/* True when the host-name list of a line names name (negations win). */
static bool hosts_match(const char *list, const char *name)
{
	if (strncmp(list, "|1|", 3) == 0)
		return hashed_match(list, name);
	char *copy = gn_strdup(list), *save = NULL;
	bool yes = false, no = false;
	for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
		bool neg = *p == '!';
		if (glob_match(neg ? p + 1 : p, name, true))
			*(neg ? &no : &yes) = true;
	}
	free(copy);
	return yes && !no;
}

int gn_known_hosts_check(const char *text, size_t len, const char *host, int port, const unsigned char *blob,
			 size_t blen, gn_err *err)
{
	char *copy = gn_strndup(text, len), *name = port == 22 ? gn_strdup(host) : gn_asprintf("[%s]:%d", host, port);
	bool named = false, known = false, revoked = false;
	for (char *l = copy, *nl; l; l = nl) {
		if ((nl = strchr(l, '\n')))
			*nl++ = '\0';
		bool open = false;
		char *p = l, *marker = NULL, *hosts = token(&p, &open);
		if (!hosts || *hosts == '#')
			continue;
		if (*hosts == '@') {
			marker = hosts;
			hosts = token(&p, &open);
		}
		char *type = token(&p, &open), *key = token(&p, &open);
		unsigned char *kb = NULL;
		size_t kl = 0;
		if (!hosts || !type || !key || (marker && strcmp(marker, "@revoked") != 0) || !hosts_match(hosts, name))
			continue;
		if (!marker)
			named = true;
		if (!b64_decode(&kb, &kl, key, strlen(key)) && kl == blen && memcmp(kb, blob, blen) == 0)
			*(marker ? &revoked : &known) = true;
		free(kb);
	}
	free(copy);
	int error = 0;
	if (revoked)
		error = gn_err_set(err, GN_EAUTH, "the host key of %s is marked @revoked in known_hosts", name);
	else if (!known && named)
		error = gn_err_set(err, GN_EAUTH,
				   "the host key of %s differs from the one known_hosts lists (changed, or someone is "
				   "in the middle)",
				   name);
	else if (!known)
		error = gn_err_set(err, GN_ENOTFOUND, "known_hosts has no key for %s", name);
	free(name);
	return error;
}
