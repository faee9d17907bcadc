/* What --version prints; the commit comes from the header scripts/gen-version.sh writes at build
 * time into the build tree, so only this file is rebuilt when the commit changes. */
#include "version.h"

#include <string.h>

#include "lib/gn_version.h"

const char *gn_version(void)
{
	return GN_VERSION_NUMBER " (commit " GN_VERSION_COMMIT ")";
}

const char *gn_version_number(void)
{
	return GN_VERSION_NUMBER;
}

bool gn_version_wanted(const gn_conf_table *t, int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--version") == 0)
			return true;
		if (strcmp(a, "--") == 0 || strncmp(a, "--", 2) != 0)
			return false;
		if (strchr(a, '='))
			continue;
		const gn_conf_opt *o = gn_conf_find(t, a + 2);
		if (o && o->type != GN_CONF_BOOL)
			i++; /* its value */
	}
	return false;
}
