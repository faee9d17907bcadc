/* SSH signatures in OpenSSH's SSHSIG format (what `git commit -S` writes with gpg.format=ssh) and
 * allowed-signers files (git's gpg.ssh.allowedSignersFile, the ALLOWED SIGNERS format of
 * ssh-keygen(1)), for Ed25519 keys, verified with OpenSSL; and host keys against known_hosts
 * files (sshd(8) SSH_KNOWN_HOSTS FILE FORMAT). Never prints. */
#ifndef GN_SSHSIG_H
#define GN_SSHSIG_H

#include "common.h"

#define GN_SSH_ED25519_LEN 32

/* One line of an allowed-signers file. */
struct gn_ssh_signer {
	char *principals;                  /* as written: "alice@example.org,bob@example.org" */
	char *namespaces;                  /* the namespaces="..." option, or NULL for any */
	int64_t valid_after, valid_before; /* seconds since the epoch; 0: no bound */
	unsigned char key[GN_SSH_ED25519_LEN];
	int line;
};

typedef struct gn_allowed_signers {
	struct gn_ssh_signer *v;
	size_t n;
} gn_allowed_signers;

/* Parses an allowed-signers file's text (len bytes) into out (cleaned with
 * gn_allowed_signers_cleanup, also after a failure). Blank lines and # comments are skipped.
 * GN_EINVAL naming the line for a malformed line, a key type other than ssh-ed25519, or an option
 * that is not supported (cert-authority); a file with no key at all is GN_EINVAL too. */
int gn_allowed_signers_parse(gn_allowed_signers *out, const char *text, size_t len, gn_err *err) GN_WUR;
/* Reads and parses the file at path (at most 1 MiB); GN_EINVAL naming the file otherwise. */
int gn_allowed_signers_load(gn_allowed_signers *out, const char *path, gn_err *err) GN_WUR;
void gn_allowed_signers_cleanup(gn_allowed_signers *s);

/* Verifies an armored SSH signature ("-----BEGIN SSH SIGNATURE-----", alen bytes) over msg in
 * namespace ns ("git") by a key of allowed whose options allow ns and the time `at` (seconds since
 * the epoch; the commit's time). On success *out_signer is "PRINCIPALS (SHA256:FINGERPRINT)"
 * (new). GN_EINVAL for a malformed signature or one of an unsupported kind; GN_EAUTH for a
 * signature that does not verify, or by a key that no line allows (the message names its
 * fingerprint). */
int gn_sshsig_verify(char **out_signer, const gn_allowed_signers *allowed, const char *ns, int64_t at,
		     const char *armored, size_t alen, const void *msg, size_t len, gn_err *err) GN_WUR;

/* Checks an SSH server's host key (blob: its SSH wire encoding, blen bytes) against the text of a
 * known_hosts file for host and port (22: the name alone; other ports: "[host]:port"). Plain,
 * wildcard (* ?), negated (!) and hashed (|1|salt|hash) host names are understood; @revoked keys
 * are refused; @cert-authority lines are not used. 0 when a line for the host lists this key;
 * GN_EAUTH when the key is revoked or the host's lines list other keys only (a changed host key);
 * GN_ENOTFOUND when no line names the host. */
int gn_known_hosts_check(const char *text, size_t len, const char *host, int port, const unsigned char *blob,
			 size_t blen, gn_err *err) GN_WUR;

#endif
