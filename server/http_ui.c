/* GET /ui/...: the web dashboard's files (ui/ in the source tree, embedded by scripts/embed-ui.sh).
 * They are public: they hold no data. The page signs in with an API token that the browser keeps
 * for its session and sends as a bearer header to the REST API, which checks the scopes as for
 * any client. Every file goes out with a Content-Security-Policy that allows scripts, styles and
 * connections to this origin only (no inline script or style, no framing), and with an ETag so
 * that a browser revalidates it (Cache-Control: no-cache) with a 304 instead of downloading it
 * again. */
#include <string.h>

#include "gangliond.h"
#include "http.h"
#include "ui_assets.h"

#define UI_CSP                                                                                          \
	"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " \
	"object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static const struct ui_asset *ui_find(const char *name)
{
	for (size_t i = 0; i < gd_ui_assets_count; i++) {
		if (strcmp(gd_ui_assets[i].name, name) == 0)
			return &gd_ui_assets[i];
	}
	return NULL;
}

/* The headers every answer under /ui carries, files and refusals alike. */
static void ui_security_headers(struct gd_req *r)
{
	gd_header(r, "Content-Security-Policy", UI_CSP);
	gd_header(r, "X-Content-Type-Options", "nosniff");
	gd_header(r, "X-Frame-Options", "DENY");
	gd_header(r, "Referrer-Policy", "no-referrer");
	gd_header(r, "Cross-Origin-Opener-Policy", "same-origin");
}

static void ui_serve(struct gd_req *r, const char *name)
{
	ui_security_headers(r);
	const struct ui_asset *a = ui_find(name);
	if (!a) {
		gd_reply_problem(r, 404, "no such file in the web dashboard");
		return;
	}
	gd_header(r, "ETag", a->etag);
	gd_header(r, "Cache-Control", "no-cache");
	if (gd_not_modified(r, a->etag)) {
		gd_reply_raw(r, 304, NULL, "", 0);
		return;
	}
	gd_reply_raw(r, 200, a->type, (const char *)a->data, a->len);
}

/* The page, at /ui and /ui/ alike: it names its files by absolute paths (/ui/app.js). */
static void http_ui_index(struct gd_req *r)
{
	ui_serve(r, "index.html");
}

static void http_ui_asset(struct gd_req *r)
{
	ui_serve(r, gd_param(r, 0));
}

const struct gd_route http_ui_routes[] = {
	{"GET", "/ui", GD_SCOPE_PUBLIC, http_ui_index, NULL},
	{"GET", "/ui/", GD_SCOPE_PUBLIC, http_ui_index, NULL},
	{"GET", "/ui/{asset}", GD_SCOPE_PUBLIC, http_ui_asset, NULL},
};
const size_t http_ui_nroutes = GN_ARRAY_LEN(http_ui_routes);
