/* The web dashboard's files (ui/), embedded at build time by scripts/embed-ui.sh into
 * ui_assets_gen.c and served by http_ui.c. */
#ifndef GD_UI_ASSETS_H
#define GD_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char *name; /* "app.js": the path under /ui/ */
	const char *type; /* Content-Type */
	const char *etag; /* strong ETag, quoted: a hash of the bytes */
	const unsigned char *data;
	size_t len;
};

extern const struct ui_asset gd_ui_assets[];
extern const size_t gd_ui_assets_count;

#endif
