/* The memory floor under ganglion-agent (bench/agent_rss.py runs it as the reference): a process
 * that links what the agent links for its network and its checks (libcurl, OpenSSL's libcrypto,
 * libmicrohttpd, jansson) and prints its RssAnon and RssFile (KiB, /proc/self/status) and its Pss
 * and Private (/proc/self/smaps_rollup: what it costs the device beside other processes) as JSON at
 * three points: at the start of main (the dynamic loader's work only), after one SHA-256 through
 * OpenSSL 3's EVP (which loads its default provider), and after curl_global_init. */
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_mem.h"

/* RssAnon and RssFile (/proc/self/status), Pss and Private (clean + dirty, /proc/self/smaps_rollup). */
static void rss(const char *tag, const char *sep)
{
	char b[8192], r[4096];
	proc_slurp("/proc/self/status", b, sizeof(b));
	proc_slurp("/proc/self/smaps_rollup", r, sizeof(r));
	printf("\"%s\": {\"RssAnon\": %ld, \"RssFile\": %ld, \"Pss\": %ld, \"Private\": %ld}%s", tag,
	       proc_field(b, "RssAnon:"), proc_field(b, "RssFile:"), proc_field(r, "\nPss:"),
	       proc_field(r, "Private_Clean:") + proc_field(r, "Private_Dirty:"), sep);
}

int main(void)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int len;
	printf("{");
	rss("start", ", ");
	if (EVP_Digest("x", 1, d, &len, EVP_sha256(), NULL) != 1)
		return 1;
	rss("after_sha256", ", ");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	rss("after_curl_init", "");
	printf(", \"linked\": \"%s %s %s\"}\n", curl_version(), MHD_get_version(), JANSSON_VERSION);
	json_decref(json_object()); /* jansson too is used, as the agent uses it */
	curl_global_cleanup();
	return 0;
}
