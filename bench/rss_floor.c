/* The memory floor under ganglion-agent (bench/agent_rss.py runs it as the reference): a process
 * that links what the agent links for its network and its checks (libcurl, OpenSSL's libcrypto,
 * libmicrohttpd, jansson) and prints its RssAnon and RssFile (KiB, /proc/self/status) as JSON at
 * three points: at the start of main (the dynamic loader's work only), after one SHA-256 through
 * OpenSSL 3's EVP (which loads its default provider), and after curl_global_init. */
#include <curl/curl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void rss(const char *tag, const char *sep)
{
	char b[8192], *anon, *file;
	FILE *f = fopen("/proc/self/status", "r");
	size_t n = f ? fread(b, 1, sizeof(b) - 1, f) : 0;
	if (f)
		fclose(f);
	b[n] = '\0';
	anon = strstr(b, "RssAnon:");
	file = strstr(b, "RssFile:");
	printf("\"%s\": {\"RssAnon\": %ld, \"RssFile\": %ld}%s", tag, anon ? strtol(anon + 8, NULL, 10) : -1L,
	       file ? strtol(file + 8, NULL, 10) : -1L, sep);
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
