/* What --version prints: configure.ac's version and the git commit the build came from. */
#ifndef GN_VERSION_H
#define GN_VERSION_H

#include "conf.h"

/* Returns "0.1.0 (commit 1a2b3c4d5e6f)" (borrowed, static): configure.ac's version and the commit
 * scripts/gen-version.sh found ("-dirty" when tracked files differed from it, "unknown" when the
 * tree was neither a git checkout nor a release tarball). */
const char *gn_version(void);
/* Returns configure.ac's version alone ("0.1.0"; borrowed, static). */
const char *gn_version_number(void);
/* Returns whether argv[0..argc) holds --version among the flags before its first positional
 * argument; t names the flags that take a value, so `--data-dir --version` is not read as one. */
bool gn_version_wanted(const gn_conf_table *t, int argc, char **argv);

#endif
