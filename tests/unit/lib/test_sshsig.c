/* Unit tests for lib/sshsig.c: allowed-signers files and SSH signatures made by OpenSSH's
 * ssh-keygen -Y sign (the fixtures below; keys generated for this test only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "sshsig.h"

#define ALICE "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICoNxLQpgA1+RchAvlZW8s/Yq6HUZazd/x4akqOTovQ7"
#define MALLORY "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP/NBb6bJlJjhqfoFNOntNSyE4m2kFGQwM53Yhki24wg"
#define EC \
	"ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOhq2SaFmDKp3ku/z66CSdvvEpNitwAkMHcjAlwnaTKZMs1A3Qb531zwsfrPgEU/Blvt823Ie34NRD78AmON3qI="
#define MALLORY_LINE "mallory@example.org " MALLORY "\n"
/* An ssh-rsa key blob given as if it were ssh-ed25519. */
#define MALLORY_B64_RSA "AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7"
#define ALICE_FP "SHA256:7TlHRDJyXuGqx4VB6AHc26/PyVH5+AFU7w8bEeFuD+0"
/* What was signed (a commit-like text), at 1700000000. */
static const char msg[] = "tree 0123\nauthor A <a@x> 1700000000 +0000\n\nmsg\n";
#define AT 1700000000

static const char sig_alice_git[] = "-----BEGIN SSH SIGNATURE-----\n"
				    "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgKg3EtCmADX5FyEC+Vlbyz9irod\n"
				    "RlrN3/HhqSo5Oi9DsAAAADZ2l0AAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5\n"
				    "AAAAQD6TL4emGjIyC3Mtk+YauPaPoa0ziiGNUcZ0pqoA1uqkujLB4nB2q0Zk/QXOuxz5CI\n"
				    "1saYN1Qtw/+QCKDx4o3gg=\n"
				    "-----END SSH SIGNATURE-----\n";
static const char sig_alice_git256[] = "-----BEGIN SSH SIGNATURE-----\n"
				       "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgKg3EtCmADX5FyEC+Vlbyz9irod\n"
				       "RlrN3/HhqSo5Oi9DsAAAADZ2l0AAAAAAAAAAZzaGEyNTYAAABTAAAAC3NzaC1lZDI1NTE5\n"
				       "AAAAQBSMsgIszSa50Npe13ax/ZZOVcYt6eaHtzgxJKRl8RAbochCRdL9aL6kTR5fEPQFQT\n"
				       "9zfPCCwWQT/M/z9B0lYww=\n"
				       "-----END SSH SIGNATURE-----\n";
static const char sig_alice_file256[] = "-----BEGIN SSH SIGNATURE-----\n"
					"U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAgKg3EtCmADX5FyEC+Vlbyz9irod\n"
					"RlrN3/HhqSo5Oi9DsAAAAEZmlsZQAAAAAAAAAGc2hhMjU2AAAAUwAAAAtzc2gtZWQyNTUx\n"
					"OQAAAEDQvSoasv9xuQ+gm2LBWt3vJZIUvg3ZIAKGkdKeB7a43HPrszzgMyAE2Ej3Lhn8HA\n"
					"AA4/5izlRkTKWurn5gctYN\n"
					"-----END SSH SIGNATURE-----\n";
static const char sig_mallory_git[] = "-----BEGIN SSH SIGNATURE-----\n"
				      "U1NIU0lHAAAAAQAAADMAAAALc3NoLWVkMjU1MTkAAAAg/80FvpsmUmOGp+gU06e01LITib\n"
				      "aQUZDAzndiGSLbjCAAAAADZ2l0AAAAAAAAAAZzaGE1MTIAAABTAAAAC3NzaC1lZDI1NTE5\n"
				      "AAAAQFqoxkwGNPICvoF1WsJFewdHZWcTKfRBJjjX+HkE/Rn9lFjmYub4u22f13OkHuhf0k\n"
				      "cfH3oQCw2tNjbao87r2wA=\n"
				      "-----END SSH SIGNATURE-----\n";
static const char sig_ec_git[] = "-----BEGIN SSH SIGNATURE-----\n"
				 "U1NIU0lHAAAAAQAAAGgAAAATZWNkc2Etc2hhMi1uaXN0cDI1NgAAAAhuaXN0cDI1NgAAAE\n"
				 "EE6GrZJoWYMqneS7/ProJJ2+8Sk2K3ACQwdyMCXCdpMpkyzUDdBvnfXPCx+s+ART8GW+3z\n"
				 "bch7fg1EPvwCY43eogAAAANnaXQAAAAAAAAABnNoYTUxMgAAAGUAAAATZWNkc2Etc2hhMi\n"
				 "1uaXN0cDI1NgAAAEoAAAAhAP5L7oO1/YpSG2L1ivKclBZiRUyYpwKX41xbeNAhPUkCAAAA\n"
				 "IQCFAGIi5iDnG1eroJ+8PnDTDcI7yXbOdAeWNEpuvfSUpQ==\n"
				 "-----END SSH SIGNATURE-----\n";

static void load(gn_allowed_signers *out, const char *text)
{
	gn_err err;
	if (gn_allowed_signers_parse(out, text, strlen(text), &err))
		fail_msg("allowed signers did not parse: %s", err.msg);
}

/* Verifies sig over msg with the signers in text; returns the code and, on success, the signer. */
static int verify(char **out_signer, const char *text, const char *ns, const char *sig, const char *m, gn_err *err)
{
	gn_allowed_signers a;
	load(&a, text);
	int rc = gn_sshsig_verify(out_signer, &a, ns, AT, sig, strlen(sig), m, strlen(m), err);
	gn_allowed_signers_cleanup(&a);
	return rc;
}

static void test_good_signatures(void **state)
{
	const char *signers = "# the release team\n\nalice@example.org " ALICE " alice's laptop\n" MALLORY_LINE;
	char *who = NULL;
	gn_err err;
	assert_int_equal(verify(&who, signers, "git", sig_alice_git, msg, &err), 0);
	assert_string_equal(who, "alice@example.org (" ALICE_FP ")");
	free(who);
	assert_int_equal(verify(&who, signers, "git", sig_alice_git256, msg, &err), 0); /* SHA-256 as the hash */
	free(who);
	/* Options: namespaces that include git, and a validity window around the time. */
	assert_int_equal(verify(&who,
				"\"alice@example.org,a@x\" namespaces=\"file,git\",valid-after=\"20230101\","
				"valid-before=20240101Z " ALICE "\n",
				"git", sig_alice_git, msg, &err),
			 0);
	assert_string_equal(who, "alice@example.org,a@x (" ALICE_FP ")");
	free(who);
}

static void test_bad_signatures(void **state)
{
	const char *signers = "alice@example.org " ALICE "\n";
	char *who = NULL;
	gn_err err;
	char tampered[sizeof(msg)];
	memcpy(tampered, msg, sizeof(msg));
	tampered[sizeof(msg) - 3] = 'X';
	assert_int_equal(verify(&who, signers, "git", sig_alice_git, tampered, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "does not verify"));
	assert_int_equal(verify(&who, signers, "git", sig_mallory_git, msg, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "does not list"));
	assert_int_equal(verify(&who, signers, "git", sig_alice_file256, msg, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "namespace 'file'"));
	assert_int_equal(verify(&who, signers, "git", sig_ec_git, msg, &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "only ssh-ed25519"));
	/* Listed, but not for git, or not at the commit's time. */
	assert_int_equal(verify(&who, "a namespaces=\"file\" " ALICE "\n", "git", sig_alice_git, msg, &err), GN_EAUTH);
	assert_non_null(strstr(err.msg, "not for namespace"));
	assert_int_equal(verify(&who, "a valid-before=20200101Z " ALICE "\n", "git", sig_alice_git, msg, &err),
			 GN_EAUTH);
	assert_int_equal(verify(&who, "a valid-after=20300101Z " ALICE "\n", "git", sig_alice_git, msg, &err),
			 GN_EAUTH);
	/* Not a signature at all, or a damaged one. */
	assert_int_equal(verify(&who, signers, "git", "-----BEGIN PGP SIGNATURE-----\nxx\n", msg, &err), GN_EINVAL);
	char broken[sizeof(sig_alice_git)];
	memcpy(broken, sig_alice_git, sizeof(broken));
	broken[40] = broken[40] == 'A' ? 'B' : 'A';
	assert_int_not_equal(verify(&who, signers, "git", broken, msg, &err), 0);
	assert_null(who);
}

static void test_allowed_signers_refusals(void **state)
{
	static const struct {
		const char *text, *phrase;
	} cases[] = {
		{"", "lists no key"},
		{"# nothing\n\n", "lists no key"},
		{"a " EC "\n", "line 1: key type ecdsa-sha2-nistp256 is not supported"},
		{"\n\na cert-authority " ALICE "\n", "line 3: cert-authority"},
		{"a colour=red " ALICE "\n", "unknown option 'colour'"},
		{"a valid-after=yesterday " ALICE "\n", "valid-after must be"},
		{"a ssh-ed25519\n", "line 1: expected"},
		{"a ssh-ed25519 AAAA!!!!\n", "not a valid ssh-ed25519"},
		{"a ssh-ed25519 " MALLORY_B64_RSA "\n", "not a valid ssh-ed25519"},
		{"\"a namespaces=git " ALICE "\n", "not closed"},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		gn_allowed_signers a;
		gn_err err;
		int rc = gn_allowed_signers_parse(&a, cases[i].text, strlen(cases[i].text), &err);
		gn_allowed_signers_cleanup(&a);
		if (rc != GN_EINVAL || !strstr(err.msg, cases[i].phrase))
			fail_msg("case %zu: rc %d, '%s'", i, rc, rc ? err.msg : "");
	}
	gn_allowed_signers a;
	gn_err err;
	assert_int_equal(gn_allowed_signers_load(&a, "/nonexistent/allowed_signers", &err), GN_EINVAL);
	assert_non_null(strstr(err.msg, "/nonexistent/allowed_signers"));
	gn_allowed_signers_cleanup(&a);
}

/* Host keys: the blob of ALICE's key stands for a server's host key. */
static void test_known_hosts(void **state)
{
	static const unsigned char b64[] = "AAAAC3NzaC1lZDI1NTE5AAAAICoNxLQpgA1+RchAvlZW8s/Yq6HUZazd/x4akqOTovQ7";
	unsigned char blob[64];
	int n = EVP_DecodeBlock(blob, b64, (int)strlen((const char *)b64));
	assert_int_equal(n, 51); /* 51 bytes; the padding byte is not part of the key */
	static const struct {
		const char *text, *host;
		int port, rc;
	} cases[] = {
		{"git.example.org " ALICE "\n", "git.example.org", 22, 0},
		{"other.org " MALLORY "\ngit.example.org,10.0.0.1 " ALICE " comment\n", "10.0.0.1", 22, 0},
		{"*.example.org " ALICE "\n", "git.example.org", 22, 0},
		{"*.example.org,!git.example.org " ALICE "\n", "git.example.org", 22, GN_ENOTFOUND},
		{"[git.example.org]:2222 " ALICE "\n", "git.example.org", 2222, 0},
		{"git.example.org " ALICE "\n", "git.example.org", 2222, GN_ENOTFOUND},
		{"|1|W3UjdktqyxyxUZDUU9Shh9MvnAU=|wyICVwVhka0sBFP/pxSJZfa+PY4= " ALICE "\n", "git.example.org", 22, 0},
		{"|1|W3UjdktqyxyxUZDUU9Shh9MvnAU=|wyICVwVhka0sBFP/pxSJZfa+PY4= " ALICE "\n", "gut.example.org", 22,
		 GN_ENOTFOUND},
		{"git.example.org " MALLORY "\n", "git.example.org", 22, GN_EAUTH},
		{"git.example.org " ALICE "\n@revoked * " ALICE "\n", "git.example.org", 22, GN_EAUTH},
		{"@cert-authority *.example.org " ALICE "\n", "git.example.org", 22, GN_ENOTFOUND},
		{"# git.example.org " ALICE "\n", "git.example.org", 22, GN_ENOTFOUND},
	};
	for (size_t i = 0; i < GN_ARRAY_LEN(cases); i++) {
		gn_err err;
		int rc = gn_known_hosts_check(cases[i].text, strlen(cases[i].text), cases[i].host, cases[i].port, blob,
					      51, &err);
		if (rc != cases[i].rc)
			fail_msg("case %zu: %d, not %d (%s)", i, rc, cases[i].rc, rc ? err.msg : "");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_signatures),
		cmocka_unit_test(test_bad_signatures),
		cmocka_unit_test(test_allowed_signers_refusals),
		cmocka_unit_test(test_known_hosts),
	};
	return cmocka_run_group_tests_name("sshsig", tests, NULL, NULL);
}
