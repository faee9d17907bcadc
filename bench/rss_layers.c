/* Where the memory floor under ganglion-agent comes from, layer by layer (bench/agent_rss.py runs
 * it beside bench/rss_floor): a process that starts with libc alone and loads, with dlopen and lazy
 * binding as the dynamic loader would at start, what the agent links, one library at a time, using
 * each as the agent does: OpenSSL's libcrypto (one SHA-256, which loads OpenSSL 3's default
 * provider), libcurl with the libraries Debian's build of it pulls in (curl_global_init),
 * libmicrohttpd and jansson. After each it prints, as JSON, VmRSS, RssAnon and RssFile
 * (/proc/self/status), Pss and Private (clean + dirty, /proc/self/smaps_rollup) in KiB, and how many
 * shared objects are mapped. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proc_mem.h"

/* Shared objects mapped now: distinct paths in /proc/self/maps that contain ".so". */
static int objects(void)
{
	static char seen[128][256];
	int n = 0;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f)) {
		char *path = strchr(line, '/');
		if (!path || !strstr(path, ".so"))
			continue;
		path[strcspn(path, "\n")] = '\0';
		int known = 0;
		for (int i = 0; i < n && !known; i++)
			known = strcmp(seen[i], path) == 0;
		if (!known && n < 128)
			snprintf(seen[n++], sizeof(seen[0]), "%s", path);
	}
	if (f)
		fclose(f);
	return n;
}

static void report(const char *layer, const char *sep)
{
	char b[8192], r[4096];
	proc_slurp("/proc/self/status", b, sizeof(b));
	proc_slurp("/proc/self/smaps_rollup", r, sizeof(r));
	printf("{\"layer\": \"%s\", \"VmRSS\": %ld, \"RssAnon\": %ld, \"RssFile\": %ld, \"Pss\": %ld, \"Private\": %ld, "
	       "\"shared_objects\": %d}%s\n",
	       layer, proc_field(b, "VmRSS:"), proc_field(b, "RssAnon:"), proc_field(b, "RssFile:"),
	       proc_field(r, "\nPss:"), proc_field(r, "Private_Clean:") + proc_field(r, "Private_Dirty:"), objects(),
	       sep);
}

static void *open_or_die(const char *name)
{
	void *h = dlopen(name, RTLD_LAZY | RTLD_GLOBAL);
	if (!h) {
		fprintf(stderr, "rss_layers: %s\n", dlerror());
		exit(1);
	}
	return h;
}

int main(void)
{
	unsigned char digest[64];
	unsigned int len;
	printf("[\n");
	report("libc", ",");

	void *crypto = open_or_die("libcrypto.so.3");
	const void *(*sha256)(void) = (const void *(*)(void))dlsym(crypto, "EVP_sha256");
	int (*evp_digest)(const void *, size_t, unsigned char *, unsigned int *, const void *, void *) =
		(int (*)(const void *, size_t, unsigned char *, unsigned int *, const void *, void *))dlsym(
			crypto, "EVP_Digest");
	if (!sha256 || !evp_digest || evp_digest("x", 1, digest, &len, sha256(), NULL) != 1)
		return 1;
	report("+ libcrypto, one SHA-256", ",");

	void *curl = open_or_die("libcurl.so.4");
	int (*global_init)(long) = (int (*)(long))dlsym(curl, "curl_global_init");
	if (!global_init || global_init(3 /* CURL_GLOBAL_DEFAULT */) != 0)
		return 1;
	report("+ libcurl and its dependencies, curl_global_init", ",");

	open_or_die("libmicrohttpd.so.12");
	report("+ libmicrohttpd", ",");
	open_or_die("libjansson.so.4");
	report("+ jansson", "");
	printf("]\n");
	return 0;
}
