/* ganglion models profile: a reference profile computed from training data (a CSV file or a
 * numpy .npy array), with lib/drift.c's rules, so that the agent and gangliond bin exactly as it
 * did. Reads files only; sends nothing. */
#include "cmd_telemetry.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drift.h"
#include "json.h"
#include "npy.h"

#define DEFAULT_BINS 10
#define DEFAULT_MAX_VOCAB 64
#define CONFIDENCE_BINS 10          /* confidence deciles */
#define IMAGE_EDGE_SAMPLE (1 << 20) /* pixel values the intensity edges are computed from, at most */
#define CSV_MAX ((size_t)1 << 32)

/* --- reading data -------------------------------------------------------------------------- */

/* Training data as columns: names, and per cell its text (CSV; NULL for a missing value) and its
 * number (NaN when missing or not a number). */
struct table {
	size_t nrows, ncols;
	char **names;      /* ncols, new */
	const char **text; /* nrows * ncols, row-major, borrowed from buf; NULL for .npy */
	double *num;       /* nrows * ncols, row-major */
	bool *numeric;     /* ncols: every present cell is a number */
	gn_buf buf;        /* the CSV file's bytes, cut into cells in place */
};

static void table_cleanup(struct table *t)
{
	for (size_t i = 0; t->names && i < t->ncols; i++)
		free(t->names[i]);
	free(t->names);
	free(t->text);
	free(t->num);
	free(t->numeric);
	gn_buf_cleanup(&t->buf);
	memset(t, 0, sizeof(*t));
}

static bool has_suffix(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

static bool missing(const char *s)
{
	return !s || !*s || strcasecmp(s, "nan") == 0 || strcmp(s, "NA") == 0 || strcasecmp(s, "null") == 0;
}

/* Parses a whole cell as a number (surrounding blanks allowed). */
static bool parse_number(double *out, const char *s)
{
	char *end;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return false;
	errno = 0;
	*out = strtod(s, &end);
	while (*end == ' ' || *end == '\t')
		end++;
	return *end == '\0' && errno != ERANGE;
}

static int read_file(gn_buf *b, const char *path, size_t max, gn_err *err)
{
	char chunk[65536];
	size_t n;
	FILE *f = fopen(path, "re");
	if (!f)
		return gn_err_set(err, CLI_EUSAGE, "cannot open %s: %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (n > max - b->len) {
			fclose(f);
			return gn_err_set(err, CLI_EUSAGE, "%s is larger than %zu bytes", path, max);
		}
		gn_buf_append(b, chunk, n);
	}
	int bad = ferror(f);
	fclose(f);
	if (bad)
		return gn_err_set(err, CLI_EUSAGE, "cannot read %s", path);
	return 0;
}

/* Cuts the CSV row at *p (RFC 4180: quoted fields, "" inside quotes, CRLF or LF) into cells,
 * NUL-terminated in place; appends them to cells. Returns the number of cells, -1 on a bad quote. */
static long csv_row(char **p, char *end, const char ***cells, size_t *ncells, size_t *cap)
{
	long n = 0;
	char *s = *p;
	for (;;) {
		char *out = s, *start = s;
		if (s < end && *s == '"') {
			char *r = s + 1;
			for (;;) {
				if (r >= end)
					return -1;
				if (*r == '"' && r + 1 < end && r[1] == '"') {
					*out++ = '"';
					r += 2;
				} else if (*r == '"') {
					r++;
					break;
				} else {
					*out++ = *r++;
				}
			}
			s = r;
			if (s < end && *s != ',' && *s != '\n' && *s != '\r')
				return -1;
		} else {
			while (s < end && *s != ',' && *s != '\n' && *s != '\r')
				s++;
			out = s;
		}
		char sep = s < end ? *s : '\n';
		*out = '\0';
		if (*ncells == *cap) {
			*cap = *cap ? *cap * 2 : 1024;
			*cells = gn_realloc(*cells, *cap * sizeof(char *));
		}
		(*cells)[(*ncells)++] = start;
		n++;
		if (s < end)
			s++;
		if (sep == '\r' && s < end && *s == '\n')
			s++;
		if (sep != ',')
			break;
	}
	*p = s;
	return n;
}

static int table_load_csv(struct table *t, const char *path, bool header, gn_err *err)
{
	const char **cells = NULL;
	size_t ncells = 0, cap = 0, line = 0;
	int rc;
	gn_buf_init(&t->buf);
	if ((rc = read_file(&t->buf, path, CSV_MAX, err)))
		return rc;
	char *p = t->buf.data, *end = t->buf.data + t->buf.len;
	while (p < end) {
		line++;
		if (*p == '\n' || *p == '\r') { /* a blank line */
			p += *p == '\r' && p + 1 < end && p[1] == '\n' ? 2 : 1;
			continue;
		}
		long n = csv_row(&p, end, &cells, &ncells, &cap);
		if (n < 0) {
			rc = gn_err_set(err, CLI_EUSAGE, "%s:%zu: a quoted field is not closed properly", path, line);
			goto out;
		}
		if (t->ncols == 0)
			t->ncols = (size_t)n;
		else if ((size_t)n != t->ncols) {
			rc = gn_err_set(err, CLI_EUSAGE, "%s:%zu: %ld fields; the first row has %zu", path, line, n,
					t->ncols);
			goto out;
		}
	}
	if (t->ncols == 0 || ncells / t->ncols <= (header ? 1u : 0u)) {
		rc = gn_err_set(err, CLI_EUSAGE, "%s holds no data rows", path);
		goto out;
	}
	t->names = gn_calloc(t->ncols, sizeof(char *));
	for (size_t c = 0; c < t->ncols; c++)
		t->names[c] = header ? gn_strdup(cells[c]) : gn_asprintf("x%zu", c);
	size_t skip = header ? t->ncols : 0;
	t->nrows = ncells / t->ncols - (header ? 1 : 0);
	t->text = gn_calloc(t->nrows * t->ncols, sizeof(char *));
	t->num = gn_calloc(t->nrows * t->ncols, sizeof(double));
	t->numeric = gn_calloc(t->ncols, sizeof(bool));
	for (size_t c = 0; c < t->ncols; c++)
		t->numeric[c] = true;
	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		const char *s = cells[skip + i];
		double v = NAN;
		t->text[i] = missing(s) ? NULL : s;
		if (t->text[i] && !parse_number(&v, s)) {
			t->numeric[i % t->ncols] = false;
			v = NAN;
		}
		t->num[i] = t->text[i] ? v : NAN;
	}
out:
	free(cells);
	return rc;
}

/* A numpy .npy array, mapped, read by lib/npy.c: little-endian (or one-byte) numbers in C order. */
struct npy {
	void *map;
	size_t maplen;
	gn_npy n;
	size_t ndim, shape[8], count;
};

static void npy_cleanup(struct npy *a)
{
	if (a->map && a->map != MAP_FAILED)
		munmap(a->map, a->maplen);
	memset(a, 0, sizeof(*a));
}

static double npy_at(const struct npy *a, size_t i)
{
	return gn_npy_get(&a->n, i);
}

static int npy_load(struct npy *a, const char *path, gn_err *err)
{
	struct stat st;
	gn_err e;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	memset(a, 0, sizeof(*a));
	if (fd < 0)
		return gn_err_set(err, CLI_EUSAGE, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) || st.st_size < 12) {
		close(fd);
		return gn_err_set(err, CLI_EUSAGE, "%s is not a numpy .npy file (too short)", path);
	}
	a->maplen = (size_t)st.st_size;
	a->map = mmap(NULL, a->maplen, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (a->map == MAP_FAILED)
		return gn_err_set(err, CLI_EUSAGE, "cannot read %s: %s", path, strerror(errno));
	if (gn_npy_parse(&a->n, a->map, a->maplen, a->maplen, &e))
		return gn_err_set(err, CLI_EUSAGE, "%s: %s", path, e.msg);
	if (a->n.ndim == 0)
		return gn_err_set(err, CLI_EUSAGE, "%s holds one number, not data", path);
	if ((size_t)a->n.ndim > GN_ARRAY_LEN(a->shape))
		return gn_err_set(err, CLI_EUSAGE, "%s has %d dimensions; at most %zu are read", path, a->n.ndim,
				  GN_ARRAY_LEN(a->shape));
	a->ndim = (size_t)a->n.ndim;
	for (size_t d = 0; d < a->ndim; d++)
		a->shape[d] = (size_t)a->n.shape[d];
	a->count = (size_t)a->n.count;
	return 0;
}

/* A 1-D or 2-D array as a table of numeric columns x0, x1, ... (prefix). */
static int table_from_npy(struct table *t, const struct npy *a, const char *prefix, const char *path, gn_err *err)
{
	if (a->ndim > 2)
		return gn_err_set(err, CLI_EUSAGE,
				  "%s has %zu dimensions; rows of features are 2-D (N, F), images 4-D (N, C, H, W)",
				  path, a->ndim);
	t->nrows = a->shape[0];
	t->ncols = a->ndim == 2 ? a->shape[1] : 1;
	if (t->nrows == 0 || t->ncols == 0)
		return gn_err_set(err, CLI_EUSAGE, "%s holds no data", path);
	gn_buf_init(&t->buf);
	t->names = gn_calloc(t->ncols, sizeof(char *));
	t->numeric = gn_calloc(t->ncols, sizeof(bool));
	t->num = gn_calloc(t->nrows * t->ncols, sizeof(double));
	for (size_t c = 0; c < t->ncols; c++) {
		t->names[c] = gn_asprintf("%s%zu", prefix, c);
		t->numeric[c] = true;
	}
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		t->num[i] = npy_at(a, i);
	return 0;
}

/* --- building the profile ---------------------------------------------------------------------- */

struct profile_opts {
	int64_t bins, max_vocab;
	const cli_args *args; /* for --categorical and --skip */
	const char *tensor;
};

static bool listed(const cli_args *args, const char *opt, const char *name)
{
	const char *v;
	for (size_t i = 0; (v = cli_args_nth(args, opt, i)); i++)
		if (strcmp(v, name) == 0)
			return true;
	return false;
}

/* Checks that every column named by --categorical and --skip exists. */
static int check_named_columns(const struct table *t, const cli_args *args, gn_err *err)
{
	static const char *const opts[] = {"categorical", "skip"};
	for (size_t o = 0; o < GN_ARRAY_LEN(opts); o++) {
		const char *v;
		for (size_t i = 0; (v = cli_args_nth(args, opts[o], i)); i++) {
			bool found = false;
			for (size_t c = 0; c < t->ncols && !found; c++)
				found = strcmp(t->names[c], v) == 0;
			if (found)
				continue;
			gn_buf names;
			gn_buf_init(&names);
			for (size_t c = 0; c < t->ncols && c < 8; c++)
				gn_buf_printf(&names, "%s%s", c ? ", " : "", t->names[c]);
			gn_err_set(err, CLI_EUSAGE, "--%s %s: no such column (the columns are %s%s)", opts[o], v,
				   names.data, t->ncols > 8 ? ", ..." : "");
			gn_buf_cleanup(&names);
			return CLI_EUSAGE;
		}
	}
	return 0;
}

/* Column c as a categorical feature: the cells' text, a number written as gn_drift_number_name
 * writes it (so that "3.0" in the file is "3", as the agent names the number 3). */
static int column_categorical(struct gn_drift_feature *out, const struct table *t, size_t c, size_t max_vocab,
			      gn_err *err)
{
	const char **v = gn_calloc(t->nrows ? t->nrows : 1, sizeof(char *));
	char *names = gn_calloc(t->nrows ? t->nrows : 1, 40);
	for (size_t r = 0; r < t->nrows; r++) {
		double x = t->num[r * t->ncols + c];
		if (!isnan(x)) {
			gn_drift_number_name(names + r * 40, 40, x);
			v[r] = names + r * 40;
		} else {
			v[r] = t->text ? t->text[r * t->ncols + c] : NULL;
		}
	}
	int rc = gn_drift_feature_categorical(out, t->names[c], v, t->nrows, max_vocab, err);
	free(v);
	free(names);
	return rc;
}

static int column_numeric(struct gn_drift_feature *out, const struct table *t, size_t c, size_t bins, gn_err *err)
{
	double *v = gn_calloc(t->nrows ? t->nrows : 1, sizeof(double));
	for (size_t r = 0; r < t->nrows; r++)
		v[r] = isfinite(t->num[r * t->ncols + c]) ? t->num[r * t->ncols + c] : NAN;
	int rc = gn_drift_feature_numeric(out, t->names[c], v, t->nrows, bins, err);
	free(v);
	return rc;
}

/* The input features, one per column not skipped, in order. */
static int input_features(struct gn_drift_profile *p, const struct table *t, const struct profile_opts *o, gn_err *err)
{
	int rc;
	if ((rc = check_named_columns(t, o->args, err)))
		return rc;
	p->inputs = gn_calloc(t->ncols, sizeof(*p->inputs));
	for (size_t c = 0; c < t->ncols; c++) {
		struct gn_drift_feature *f = &p->inputs[p->ninputs];
		if (listed(o->args, "skip", t->names[c]))
			continue;
		if (strlen(t->names[c]) < 1 || strlen(t->names[c]) > GN_DRIFT_NAME_MAX)
			return gn_err_set(err, CLI_EUSAGE, "column %zu: a name of 1 to %d bytes is needed", c + 1,
					  GN_DRIFT_NAME_MAX);
		if (!t->numeric[c] || listed(o->args, "categorical", t->names[c]))
			rc = column_categorical(f, t, c, (size_t)o->max_vocab, err);
		else
			rc = column_numeric(f, t, c, (size_t)o->bins, err);
		if (rc)
			return rc;
		f->index = (int64_t)p->ninputs;
		f->tensor = o->tensor ? gn_strdup(o->tensor) : NULL;
		if (!t->numeric[c])
			fprintf(stderr,
				"ganglion: column '%s' holds text: profiled as categorical (a device matches the "
				"numbers it sees to this vocabulary by their written form)\n",
				t->names[c]);
		p->ninputs++;
	}
	if (p->ninputs == 0)
		return gn_err_set(err, CLI_EUSAGE, "every column is skipped: no feature left");
	return 0;
}

/* Outputs: one column is a value (y0); several are class scores: the predicted class (argmax)
 * and the confidence (max) over deciles. */
static int output_features(struct gn_drift_profile *p, const struct table *t, gn_err *err)
{
	int rc;
	for (size_t c = 0; c < t->ncols; c++)
		if (!t->numeric[c])
			return gn_err_set(err, CLI_EUSAGE, "--outputs: column '%s' is not numeric", t->names[c]);
	p->outputs = gn_calloc(2, sizeof(*p->outputs));
	if (t->ncols == 1) {
		if ((rc = column_numeric(&p->outputs[0], t, 0, DEFAULT_BINS, err)))
			return rc;
		free(p->outputs[0].name);
		p->outputs[0].name = gn_strdup("y0");
		p->noutputs = 1;
		return 0;
	}
	char *classes = gn_calloc(t->nrows, 24);
	const char **cv = gn_calloc(t->nrows, sizeof(char *));
	double *conf = gn_calloc(t->nrows, sizeof(double));
	for (size_t r = 0; r < t->nrows; r++) {
		const double *row = t->num + r * t->ncols;
		size_t best = 0;
		for (size_t c = 1; c < t->ncols; c++)
			if (row[c] > row[best] || isnan(row[best]))
				best = c;
		conf[r] = row[best];
		if (!isnan(row[best])) {
			snprintf(classes + r * 24, 24, "%zu", best);
			cv[r] = classes + r * 24;
		}
	}
	size_t vocab = t->ncols < GN_DRIFT_MAX_VOCAB ? t->ncols : GN_DRIFT_MAX_VOCAB;
	rc = gn_drift_feature_categorical(&p->outputs[0], "class", cv, t->nrows, vocab, err);
	if (!rc) {
		p->outputs[0].reduce = GN_DRIFT_ARGMAX;
		p->noutputs = 1;
		rc = gn_drift_feature_numeric(&p->outputs[1], "confidence", conf, t->nrows, CONFIDENCE_BINS, err);
	}
	if (!rc) {
		p->outputs[1].reduce = GN_DRIFT_MAX;
		p->noutputs = 2;
	}
	free(classes);
	free(cv);
	free(conf);
	return rc;
}

/* An image batch (N, C, H, W) or (N, H, W, C): per-channel moments and an intensity histogram
 * whose edges come from at most IMAGE_EDGE_SAMPLE evenly spaced values and whose shares count
 * every value. */
static int image_profile(struct gn_drift_profile *p, const struct npy *a, const char *layout,
			 const struct profile_opts *o, gn_err *err)
{
	struct gn_drift_image *im = p->image = gn_calloc(1, sizeof(*im));
	if (layout && strcmp(layout, "nchw") != 0 && strcmp(layout, "nhwc") != 0)
		return gn_err_set(err, CLI_EUSAGE, "--layout must be nchw or nhwc");
	if (!layout) {
		/* images have 1, 3 or 4 channels */
		bool first = a->shape[1] == 1 || a->shape[1] == 3 || a->shape[1] == 4;
		bool last = a->shape[3] == 1 || a->shape[3] == 3 || a->shape[3] == 4;
		if (first == last)
			return gn_err_set(
				err, CLI_EUSAGE,
				"images of shape (%zu, %zu, %zu, %zu): say where the channels are with --layout "
				"nchw or nhwc",
				a->shape[0], a->shape[1], a->shape[2], a->shape[3]);
		layout = first ? "nchw" : "nhwc";
	}
	im->layout = strcmp(layout, "nchw") == 0 ? GN_DRIFT_NCHW : GN_DRIFT_NHWC;
	im->nchannels = im->layout == GN_DRIFT_NCHW ? a->shape[1] : a->shape[3];
	size_t plane = im->layout == GN_DRIFT_NCHW ? a->shape[2] * a->shape[3] : 1;
	if (im->nchannels < 1 || im->nchannels > GN_DRIFT_MAX_CHANNELS || a->count == 0)
		return gn_err_set(err, CLI_EUSAGE, "images need 1 to %d channels and some pixels",
				  GN_DRIFT_MAX_CHANNELS);
	im->tensor = o->tensor ? gn_strdup(o->tensor) : NULL;
	struct gn_drift_counts *ch = gn_calloc(im->nchannels, sizeof(*ch));
	size_t stride = a->count > IMAGE_EDGE_SAMPLE ? a->count / IMAGE_EDGE_SAMPLE : 1, ns = 0;
	double *sample = gn_calloc(a->count / stride + 1, sizeof(double));
	for (size_t i = 0; i < a->count; i++) {
		double x = npy_at(a, i);
		gn_drift_counts_add_value(&ch[(i / plane) % im->nchannels], x);
		if (i % stride == 0)
			sample[ns++] = isfinite(x) ? x : NAN;
	}
	im->mean = gn_calloc(im->nchannels, sizeof(double));
	im->variance = gn_calloc(im->nchannels, sizeof(double));
	for (size_t c = 0; c < im->nchannels; c++) {
		im->mean[c] = ch[c].n ? ch[c].mean : 0;
		im->variance[c] = ch[c].n ? gn_drift_counts_variance(&ch[c]) : 0;
	}
	free(ch);
	int rc = gn_drift_feature_numeric(&im->intensity, "intensity", sample, ns, (size_t)o->bins, err);
	free(sample);
	if (rc)
		return rc;
	/* the shares over every value, not only the sample */
	struct gn_drift_feature *f = &im->intensity;
	uint64_t in = 0;
	uint64_t *counts = gn_calloc(f->nbins, sizeof(uint64_t));
	for (size_t i = 0; i < a->count; i++) {
		size_t b = gn_drift_bin(f->edges, f->nbins, npy_at(a, i));
		if (b < f->nbins) {
			counts[b]++;
			in++;
		}
	}
	for (size_t b = 0; b < f->nbins; b++)
		f->ref[b] = in ? (double)counts[b] / (double)in : 0;
	f->samples = (int64_t)in;
	free(counts);
	return 0;
}

/* Loads path (CSV or .npy) as a table; an .npy of 4 dimensions is left in *img instead. */
static int load_data(struct table *t, struct npy *img, const char *path, const char *prefix, bool header, gn_err *err)
{
	struct npy a;
	int rc;
	if (has_suffix(path, ".csv"))
		return table_load_csv(t, path, header, err);
	if (!has_suffix(path, ".npy"))
		return gn_err_set(err, CLI_EUSAGE, "%s: give a .csv or a .npy file", path);
	if ((rc = npy_load(&a, path, err)))
		goto fail;
	if (a.ndim == 4 && img) {
		*img = a;
		return 0;
	}
	rc = table_from_npy(t, &a, prefix, path, err);
fail:
	npy_cleanup(&a);
	return rc;
}

/* Writes the profile: into --meta's reference_profile, to --out, or to stdout. */
static int write_profile(const cli_ctx *ctx, const cli_args *args, json_t *j, const struct gn_drift_profile *p,
			 gn_err *err)
{
	const char *meta = cli_args_get(args, "meta"), *out = cli_args_get(args, "out");
	json_t *m = NULL;
	int rc;
	if (meta) {
		/* No cap here, as for `models push`: the server's max-release-metadata decides. */
		if ((rc = cli_read_json_file(&m, meta, SIZE_MAX, err)))
			return rc;
		if (!json_is_object(m)) {
			json_decref(m);
			return gn_err_set(err, CLI_EUSAGE, "%s: the metadata is a JSON object", meta);
		}
		json_object_set(m, "reference_profile", j);
		rc = cli_write_json(meta, m, err);
		json_decref(m);
	} else {
		rc = cli_write_json(out, j, err);
	}
	if (rc || (!meta && !out) || ctx->output == CLI_OUTPUT_JSON)
		return rc;
	printf("%-24s %-12s %6s %10s\n", "FEATURE", "KIND", "BINS", "SAMPLES");
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < (k ? p->noutputs : p->ninputs); i++) {
			const struct gn_drift_feature *f = k ? &p->outputs[i] : &p->inputs[i];
			printf("%-24s %-12s %6zu %10lld\n", f->name,
			       f->kind == GN_DRIFT_NUMERIC ? (k ? "output" : "numeric")
							   : (k ? "output-class" : "categorical"),
			       f->nbins, (long long)f->samples);
		}
	if (p->image)
		printf("%-24s %-12s %6zu %10lld\n", "intensity", "image", p->image->intensity.nbins,
		       (long long)p->image->intensity.samples);
	fprintf(stderr, "ganglion: reference profile written to %s\n", meta ? meta : out);
	return 0;
}

static int profile_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	struct table in = {0}, outs = {0};
	struct npy img = {0};
	struct gn_drift_profile *p = gn_calloc(1, sizeof(*p)), *check = NULL;
	struct profile_opts o = {DEFAULT_BINS, DEFAULT_MAX_VOCAB, args, cli_args_get(args, "tensor")};
	const char *v, *preds = cli_args_get(args, "outputs");
	bool header = !cli_args_get(args, "no-header");
	json_t *j = NULL;
	int rc;

	if (((v = cli_args_get(args, "bins")) &&
	     (rc = cli_parse_int(&o.bins, v, "--bins", 1, GN_DRIFT_MAX_BINS, err))) ||
	    ((v = cli_args_get(args, "max-vocab")) &&
	     (rc = cli_parse_int(&o.max_vocab, v, "--max-vocab", 1, GN_DRIFT_MAX_VOCAB, err))))
		goto out;
	if (cli_args_get(args, "meta") && cli_args_get(args, "out")) {
		rc = gn_err_set(err, CLI_EUSAGE, "--meta and --out exclude each other");
		goto out;
	}
	if ((rc = load_data(&in, &img, args->pos[0], "x", header, err)))
		goto out;
	if (img.map)
		rc = image_profile(p, &img, cli_args_get(args, "layout"), &o, err);
	else if (cli_args_get(args, "layout"))
		rc = gn_err_set(err, CLI_EUSAGE, "--layout is for images (a 4-D .npy array)");
	else
		rc = input_features(p, &in, &o, err);
	if (rc)
		goto out;
	if (preds && ((rc = load_data(&outs, NULL, preds, "y", header, err)) || (rc = output_features(p, &outs, err))))
		goto out;
	if (outs.nrows && in.nrows && outs.nrows != in.nrows)
		fprintf(stderr, "ganglion: %s has %zu rows and %s %zu; profiled each as it is\n", args->pos[0],
			in.nrows, preds, outs.nrows);
	j = gn_drift_profile_json(p);
	/* what the server and the agent will read: the same checks before anything is written */
	if ((rc = gn_drift_profile_parse(&check, j, err))) {
		err->code = rc = CLI_EUSAGE;
		goto out;
	}
	rc = write_profile(ctx, args, j, p, err);
out:
	if (rc == GN_EINVAL)
		err->code = rc = CLI_EUSAGE; /* bad data is a bad command line, not a refused request */
	json_decref(j);
	gn_drift_profile_free(p);
	gn_drift_profile_free(check);
	table_cleanup(&in);
	table_cleanup(&outs);
	npy_cleanup(&img);
	return rc;
}

const cli_opt cmd_telemetry_profile_opts[CMD_TELEMETRY_PROFILE_NOPTS] = {
	{"bins", 0, "N", "bins per numeric feature, from the data's quantiles (1-100; default 10)"},
	{"categorical", 0, "COLUMN", "profile this numeric column as categories (repeatable)"},
	{"skip", 0, "COLUMN", "leave this column out, e.g. a label or an id (repeatable)"},
	{"max-vocab", 0, "N", "most frequent values kept per categorical feature; the rest is other (default 64)"},
	{"outputs", 0, "FILE",
	 "the model's outputs on the same data (.csv or .npy): one column is a value, several "
	 "are class scores (class histogram and confidence deciles)"},
	{"no-header", 0, NULL, "the CSV files have no header row (columns are then x0, x1, ... and y0, ...)"},
	{"layout", 0, "nchw|nhwc",
	 "where the channels are in a 4-D .npy of images (guessed when one of the two places holds 1, 3 or 4)"},
	{"tensor", 0, "NAME", "the input tensor the features are elements of (default: the model's first)"},
	{"meta", 0, "FILE", "write the profile into FILE's reference_profile (the metadata for models push --meta)"},
	{"out", 0, "FILE", "write the profile to FILE instead of stdout"},
};

int cmd_telemetry_profile_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return profile_run(ctx, args, err);
}

/* --- ganglion models drift ------------------------------------------------------------------------ */

static char *num_cell(const json_t *v, const char *fmt)
{
	return json_is_number(v) ? gn_asprintf(fmt, json_number_value(v)) : gn_strdup("-");
}

static char *psi_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "psi"), "%.4f");
}

static char *js_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "js"), "%.4f");
}

static char *linf_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "linf"), "%.4f");
}

static char *mean_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "mean"), "%.4g");
}

static char *std_cell(const json_t *row)
{
	const json_t *v = json_object_get(row, "variance");
	return json_is_number(v) ? gn_asprintf("%.4g", sqrt(json_number_value(v))) : gn_strdup("-");
}

static const output_col drift_cols[] = {
	{"FEATURE", "feature", NULL}, {"N", "n", NULL},        {"PSI", NULL, psi_cell},      {"JS", NULL, js_cell},
	{"LINF", NULL, linf_cell},    {"NAN", "nan", NULL},    {"UNDER", "underflow", NULL}, {"OVER", "overflow", NULL},
	{"MEAN", NULL, mean_cell},    {"STD", NULL, std_cell},
};

/* Bars of reference and observed shares, one line per bin (numeric: with underflow and overflow). */
static void histogram_print(const json_t *f)
{
	const json_t *ref = json_object_get(f, "reference"), *counts = json_object_get(f, "counts");
	const json_t *edges = json_object_get(f, "edges"), *vocab = json_object_get(f, "vocabulary");
	double n = (double)json_integer_value(json_object_get(f, "n"));
	size_t k = json_array_size(ref);
	if (n <= 0)
		return;
	printf("\n%s   reference #   observed =\n", gn_json_str(f, "feature"));
	for (size_t i = 0; i < k + (edges ? 2 : 0); i++) {
		char label[48];
		double p = 0, q;
		if (edges && i == 0) {
			snprintf(label, sizeof(label), "< %.4g", json_number_value(json_array_get(edges, 0)));
			q = (double)json_integer_value(json_object_get(f, "underflow")) / n;
		} else if (edges && i == k + 1) {
			snprintf(label, sizeof(label), "> %.4g", json_number_value(json_array_get(edges, k)));
			q = (double)json_integer_value(json_object_get(f, "overflow")) / n;
		} else {
			size_t b = edges ? i - 1 : i;
			if (edges)
				snprintf(label, sizeof(label), "%.4g..%.4g",
					 json_number_value(json_array_get(edges, b)),
					 json_number_value(json_array_get(edges, b + 1)));
			else
				snprintf(label, sizeof(label), "%.24s",
					 b < json_array_size(vocab) ? json_string_value(json_array_get(vocab, b))
								    : "(other)");
			p = json_number_value(json_array_get(ref, b));
			q = (double)json_integer_value(json_array_get(counts, b)) / n;
		}
		char bp[41], bq[41];
		int lp = (int)lround(p * 40), lq = (int)lround(q * 40);
		memset(bp, '#', (size_t)lp);
		bp[lp] = '\0';
		memset(bq, '=', (size_t)lq);
		bq[lq] = '\0';
		printf("  %-20s %5.1f%% %-40s\n  %-20s %5.1f%% %-40s\n", label, 100 * p, bp, "", 100 * q, bq);
	}
}

static int drift_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	static const char *const query[] = {"since", "until", "selector", "by"};
	char *name = gn_http_escape(args->pos[0]), *version = gn_http_escape(args->pos[1]);
	json_t *ans = NULL;
	size_t i;
	json_t *g;
	gn_buf path;
	int rc;
	gn_buf_init(&path);
	gn_buf_printf(&path, "/v1/models/%s/versions/%s/drift", name, version);
	for (size_t k = 0; k < GN_ARRAY_LEN(query); k++)
		if (cli_args_get(args, query[k]))
			cli_query_add(&path, query[k], cli_args_get(args, query[k]));
	if ((rc = cli_request(&ans, ctx, "GET", path.data, NULL, err))) {
		cli_model_not_found(ctx, args->pos[0], args->pos[1], err);
		rc = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	bool bars = cli_args_get(args, "histograms") || ctx->tty;
	printf("%s@%s, windows from %s to %s\n", gn_json_str(ans, "model"), gn_json_str(ans, "version"),
	       gn_json_str(ans, "since"), gn_json_str(ans, "until"));
	if (json_array_size(json_object_get(ans, "groups")) == 0)
		printf("\nNo telemetry in that time.\n");
	json_array_foreach(json_object_get(ans, "groups"), i, g) {
		const json_t *lat = json_object_get(g, "latency_us");
		printf("\n");
		if (gn_json_str(ans, "by"))
			printf("%s=%s: ", gn_json_str(ans, "by"),
			       gn_json_str(g, "group") ? gn_json_str(g, "group") : "(none)");
		printf("%lld devices, %lld windows, %lld requests, %lld errors, p50 %lld us, p95 %lld us, p99 %lld us, "
		       "%lld windows dropped\n",
		       (long long)json_integer_value(json_object_get(g, "devices")),
		       (long long)json_integer_value(json_object_get(g, "windows")),
		       (long long)json_integer_value(json_object_get(g, "requests")),
		       (long long)json_integer_value(json_object_get(g, "errors")),
		       (long long)json_integer_value(json_object_get(lat, "p50")),
		       (long long)json_integer_value(json_object_get(lat, "p95")),
		       (long long)json_integer_value(json_object_get(lat, "p99")),
		       (long long)json_integer_value(json_object_get(g, "dropped")));
		output_table(json_object_get(g, "features"), drift_cols, GN_ARRAY_LEN(drift_cols));
		size_t k;
		json_t *f;
		json_array_foreach(json_object_get(g, "features"), k, f)
			if (bars)
				histogram_print(f);
	}
out:
	gn_buf_cleanup(&path);
	free(name);
	free(version);
	json_decref(ans);
	return rc;
}

const cli_opt cmd_telemetry_drift_opts[CMD_TELEMETRY_DRIFT_NOPTS] = {
	{"since", 0, "T", "windows from T: an RFC 3339 time or a duration ago (90m, 1h, 7d; default 1h)"},
	{"until", 0, "T", "windows before T (same forms; default now)"},
	{"selector", 'l', "S", "only devices whose labels match S (site=north,!test)"},
	{"by", 0, "LABEL", "one group per value of LABEL"},
	{"histograms", 0, NULL, "draw reference and observed shares per bin (the default on a terminal)"},
};

int cmd_telemetry_drift_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return drift_run(ctx, args, err);
}

/* --- ganglion models canary ---------------------------------------------------------------------- */

static char *p_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "p"), "%.3g");
}

static char *median_canary_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "median_canary"), "%.4g");
}

static char *median_control_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "median_control"), "%.4g");
}

static char *effect_cell(const json_t *row)
{
	const json_t *e = json_object_get(row, "effect");
	if (json_is_number(e))
		return gn_asprintf("%+.1f%%", 100 * json_number_value(e));
	return gn_strdup(json_is_null(e) && json_is_number(json_object_get(row, "median_canary")) ? "from 0" : "-");
}

static const output_col canary_cols[] = {
	{"METRIC", "name", NULL},
	{"VERDICT", "verdict", NULL},
	{"CANARY N", "n_canary", NULL},
	{"CONTROL N", "n_control", NULL},
	{"CANARY MEDIAN", NULL, median_canary_cell},
	{"CONTROL MEDIAN", NULL, median_control_cell},
	{"EFFECT", NULL, effect_cell},
	{"P", NULL, p_cell},
	{"WEIGHT", "weight", NULL},
};

static int canary_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	static const char *const query[] = {"since", "until", "selector"};
	char *name = gn_http_escape(args->pos[0]);
	json_t *ans = NULL;
	gn_buf path;
	int rc;
	gn_buf_init(&path);
	gn_buf_printf(&path, "/v1/models/%s/canary", name);
	cli_query_add(&path, "canary", args->pos[1]);
	cli_query_add(&path, "control", args->pos[2]);
	for (size_t k = 0; k < GN_ARRAY_LEN(query); k++)
		if (cli_args_get(args, query[k]))
			cli_query_add(&path, query[k], cli_args_get(args, query[k]));
	if ((rc = cli_request(&ans, ctx, "GET", path.data, NULL, err))) {
		if (!cli_model_not_found(ctx, args->pos[0], args->pos[1], err))
			cli_model_not_found(ctx, args->pos[0], args->pos[2], err);
		rc = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	const json_t *score = json_object_get(ans, "score");
	printf("%s: canary %s against control %s, windows from %s to %s: %s", gn_json_str(ans, "model"),
	       gn_json_str(ans, "canary"), gn_json_str(ans, "control"), gn_json_str(ans, "since"),
	       gn_json_str(ans, "until"), gn_json_str(ans, "verdict"));
	if (json_is_number(score))
		printf(" (score %.0f)", json_number_value(score));
	printf("\n\n");
	output_table(json_object_get(ans, "metrics"), canary_cols, GN_ARRAY_LEN(canary_cols));
out:
	gn_buf_cleanup(&path);
	free(name);
	json_decref(ans);
	return rc;
}

const cli_opt cmd_telemetry_canary_opts[CMD_TELEMETRY_CANARY_NOPTS] = {
	{"since", 0, "T", "windows from T: an RFC 3339 time or a duration ago (90m, 1h, 7d; default 1h)"},
	{"until", 0, "T", "windows before T (same forms; default now)"},
	{"selector", 'l', "S", "only devices whose labels match S"},
};

int cmd_telemetry_canary_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	return canary_run(ctx, args, err);
}

/* --- ganglion alerts --------------------------------------------------------------------------- */

static char *value_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "value"), "%.4f");
}

static char *group_cell(const json_t *row)
{
	return output_value_dup(json_object_get(row, "group"));
}

static const output_col alert_cols[] = {
	{"ID", "id", NULL},
	{"STATE", "state", NULL},
	{"RULE", "rule", NULL},
	{"MODEL", "model", NULL},
	{"VERSION", "version", NULL},
	{"FEATURE", "feature", NULL},
	{"GROUP", NULL, group_cell},
	{"METRIC", "metric", NULL},
	{"VALUE", NULL, value_cell},
	{"THRESHOLD", "threshold", NULL},
	{"SAMPLES", "samples", NULL},
	{"OPENED", "opened_at", NULL},
	{"RESOLVED", "resolved_at", NULL},
};

static const output_col rule_cols[] = {
	{"NAME", "name", NULL},
	{"MODEL", "model", NULL},
	{"VERSION", "version", NULL},
	{"FEATURE", "feature", NULL},
	{"METRIC", "metric", NULL},
	{"THRESHOLD", "threshold", NULL},
	{"MIN SAMPLES", "min_samples", NULL},
	{"WINDOWS", "windows", NULL},
	{"GROUP BY", "group_by", NULL},
};

static int alerts_list_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	gn_buf path;
	gn_buf_init(&path);
	gn_buf_puts(&path, "/v1/alerts");
	cli_query_add(&path, "state", cli_args_get(args, "state") ? cli_args_get(args, "state") : "open");
	if (cli_args_get(args, "model"))
		cli_query_add(&path, "model", cli_args_get(args, "model"));
	int rc = cli_list_print(ctx, path.data, alert_cols, GN_ARRAY_LEN(alert_cols), err);
	gn_buf_cleanup(&path);
	return rc;
}

static int alerts_rules_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	(void)args;
	return cli_list_print(ctx, "/v1/alert-rules", rule_cols, GN_ARRAY_LEN(rule_cols), err);
}

static int alerts_create_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	static const char *const text[] = {"model", "version", "feature", "metric", "group-by", "webhook"};
	json_t *body = json_pack("{s:s}", "name", args->pos[0]), *ans = NULL;
	const char *v;
	int64_t n;
	int rc = 0;
	if (!cli_args_get(args, "model")) {
		rc = gn_err_set(err, CLI_EUSAGE, "--model is required");
		goto out;
	}
	for (size_t i = 0; i < GN_ARRAY_LEN(text); i++)
		if ((v = cli_args_get(args, text[i])))
			json_object_set_new(body, strcmp(text[i], "group-by") == 0 ? "group_by" : text[i],
					    json_string(v));
	if ((v = cli_args_get(args, "threshold"))) {
		char *end;
		double t = strtod(v, &end);
		if (*end || end == v || !(t > 0) || !isfinite(t)) {
			rc = gn_err_set(err, CLI_EUSAGE, "--threshold must be a number above 0, not '%s'", v);
			goto out;
		}
		json_object_set_new(body, "threshold", json_real(t));
	}
	if ((v = cli_args_get(args, "min-samples"))) {
		if ((rc = cli_parse_int(&n, v, "--min-samples", 1, INT64_MAX, err)))
			goto out;
		json_object_set_new(body, "min_samples", json_integer((json_int_t)n));
	}
	if ((v = cli_args_get(args, "windows"))) {
		if ((rc = cli_parse_int(&n, v, "--windows", 1, 100, err)))
			goto out;
		json_object_set_new(body, "windows", json_integer((json_int_t)n));
	}
	if ((rc = cli_request(&ans, ctx, "POST", "/v1/alert-rules", body, err))) {
		cli_model_not_found(ctx, cli_args_get(args, "model"), cli_args_get(args, "version"), err);
		rc = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON)
		output_json(ans);
	else
		output_fields(ans, rule_cols, GN_ARRAY_LEN(rule_cols));
out:
	json_decref(body);
	json_decref(ans);
	return rc;
}

static int alerts_delete_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	char *esc = gn_http_escape(args->pos[0]), *path = gn_asprintf("/v1/alert-rules/%s", esc);
	json_t *ans = NULL;
	int rc = cli_request(&ans, ctx, "DELETE", path, NULL, err);
	if (rc)
		cli_err_about(err, "alert rule '%s'", args->pos[0]);
	else if (ctx->output != CLI_OUTPUT_JSON)
		printf("Deleted alert rule %s (its open alerts are resolved).\n", args->pos[0]);
	json_decref(ans);
	free(esc);
	free(path);
	return rc ? err->code : 0;
}

static const cli_opt list_opts[] = {
	{"state", 0, "open|resolved|all", "which alerts (default open)"},
	{"model", 0, "NAME", "only alerts about model NAME"},
};

static const cli_opt create_opts[] = {
	{"model", 0, "NAME", "the model watched (required)"},
	{"version", 0, "V", "one version of it (default: every version)"},
	{"feature", 0, "F", "one feature, by name or as input:NAME, output:NAME (default: every feature)"},
	{"metric", 0, "psi|js|linf", "the measure (default psi; linf only judges categorical features)"},
	{"threshold", 0, "X", "alert above X (default 0.25 for psi, 0.1 for js and linf)"},
	{"min-samples", 0, "N", "a window is judged only with at least N values (default 1000)"},
	{"windows", 0, "N", "that many judged windows in a row open or resolve an alert (default 3)"},
	{"group-by", 0, "LABEL", "judge the fleet per value of device label LABEL"},
	{"webhook", 0, "URL", "POST each alert's opening and resolution to URL as JSON (retried until a 2xx answer)"},
};

static const cli_cmd alert_cmds[] = {
	{"list", "", "List drift alerts, newest first.", list_opts, GN_ARRAY_LEN(list_opts), 0, 0, alerts_list_run},
	{"rules", "", "List the drift alert rules.", NULL, 0, 0, 0, alerts_rules_run},
	{"create-rule", "NAME",
	 "Create a drift alert rule: an alert opens when the fleet's drift of a feature is above the threshold "
	 "in the last --windows windows with enough values, and resolves when it is at or below it.",
	 create_opts, GN_ARRAY_LEN(create_opts), 1, 1, alerts_create_run},
	{"delete-rule", "NAME", "Delete a drift alert rule, resolving its open alerts.", NULL, 0, 1, 1,
	 alerts_delete_run},
};

const cli_group cmd_alerts_group = {"alerts", "Drift alerts and the rules that raise them.", alert_cmds,
				    GN_ARRAY_LEN(alert_cmds)};

/* --- ganglion telemetry show ---------------------------------------------------------------------- */

static char *window_model_cell(const json_t *row)
{
	return gn_asprintf("%s@%s", gn_json_str(row, "model"), gn_json_str(row, "version"));
}

static char *lat_cell(const json_t *row, const char *q)
{
	const json_t *v = json_object_get(json_object_get(row, "latency_us"), q);
	return json_is_integer(v) ? gn_asprintf("%lld", (long long)json_integer_value(v)) : gn_strdup("-");
}

static char *p50_cell(const json_t *row)
{
	return lat_cell(row, "p50");
}

static char *p95_cell(const json_t *row)
{
	return lat_cell(row, "p95");
}

static char *p99_cell(const json_t *row)
{
	return lat_cell(row, "p99");
}

static char *err_rate_cell(const json_t *row)
{
	return num_cell(json_object_get(row, "error_rate"), "%.4f");
}

static char *cpu_cell(const json_t *row)
{
	return num_cell(json_object_get(json_object_get(row, "resources"), "cpu_seconds"), "%.2f");
}

static char *mib_cell(const json_t *row, const char *key)
{
	const json_t *v = json_object_get(json_object_get(row, "resources"), key);
	return json_is_number(v) ? gn_asprintf("%.1f", json_number_value(v) / 1048576.0) : gn_strdup("-");
}

static char *rss_cell(const json_t *row)
{
	return mib_cell(row, "rss_bytes");
}

static char *accel_cell(const json_t *row)
{
	return mib_cell(row, "accel_bytes");
}

/* The largest PSI among the window's features. */
static char *max_psi_cell(const json_t *row)
{
	size_t i;
	json_t *f;
	double max = -1;
	json_array_foreach(json_object_get(row, "features"), i, f) {
		const json_t *v = json_object_get(f, "psi");
		if (json_is_number(v) && json_number_value(v) > max)
			max = json_number_value(v);
	}
	return max >= 0 ? gn_asprintf("%.4f", max) : gn_strdup("-");
}

static const output_col window_cols[] = {
	{"START", "start", NULL},       {"MODEL", NULL, window_model_cell}, {"SECONDS", "seconds", NULL},
	{"REQUESTS", "requests", NULL}, {"ERRORS", "errors", NULL},         {"ERR_RATE", NULL, err_rate_cell},
	{"P50_US", NULL, p50_cell},     {"P95_US", NULL, p95_cell},         {"P99_US", NULL, p99_cell},
	{"CPU_S", NULL, cpu_cell},      {"RSS_MIB", NULL, rss_cell},        {"ACCEL_MIB", NULL, accel_cell},
	{"DROPPED", "dropped", NULL},   {"MAX_PSI", NULL, max_psi_cell},
};

static int telemetry_show_run(const cli_ctx *ctx, const cli_args *args, gn_err *err)
{
	char *path = NULL;
	json_t *ans = NULL;
	gn_buf q;
	int64_t n;
	int rc;
	gn_buf_init(&q);
	if ((rc = cli_device_path(&path, ctx, args->pos[0], "/telemetry", err)))
		goto out;
	gn_buf_puts(&q, path);
	if (cli_args_get(args, "since"))
		cli_query_add(&q, "since", cli_args_get(args, "since"));
	if (cli_args_get(args, "limit")) {
		if ((rc = cli_parse_int(&n, cli_args_get(args, "limit"), "--limit", 1, 1000, err)))
			goto out;
		cli_query_add(&q, "limit", cli_args_get(args, "limit"));
	}
	if ((rc = cli_request(&ans, ctx, "GET", q.data, NULL, err))) {
		cli_err_about(err, "device '%s'", args->pos[0]);
		rc = err->code;
		goto out;
	}
	if (ctx->output == CLI_OUTPUT_JSON) {
		output_json(ans);
		goto out;
	}
	const json_t *windows = json_object_get(ans, "windows");
	printf("Device %s, its last %zu window(s) since %s\n", gn_json_str(ans, "device"), json_array_size(windows),
	       gn_json_str(ans, "since"));
	if (!json_array_size(windows)) {
		printf("\nNo telemetry in that time.\n");
		goto out;
	}
	printf("\n");
	output_table(windows, window_cols, GN_ARRAY_LEN(window_cols));
	/* the drift of each feature in the newest window of each model version */
	size_t i, k;
	json_t *w, *prev;
	json_array_foreach(windows, i, w) {
		bool seen = false;
		json_array_foreach(windows, k, prev) {
			if (k >= i)
				break;
			seen = seen || (strcmp(gn_json_str(prev, "model"), gn_json_str(w, "model")) == 0 &&
					strcmp(gn_json_str(prev, "version"), gn_json_str(w, "version")) == 0);
		}
		if (seen || !json_array_size(json_object_get(w, "features")))
			continue;
		printf("\n%s@%s, window of %s: drift per feature against its reference profile\n",
		       gn_json_str(w, "model"), gn_json_str(w, "version"), gn_json_str(w, "start"));
		output_table(json_object_get(w, "features"), drift_cols, GN_ARRAY_LEN(drift_cols));
	}
out:
	gn_buf_cleanup(&q);
	free(path);
	json_decref(ans);
	return rc;
}

static const cli_opt show_opts[] = {
	{"since", 0, "T", "windows from T: an RFC 3339 time or a duration ago (90m, 1h, 7d; default 7d)"},
	{"limit", 0, "N", "at most N windows, newest first (1 to 1000, default 20)"},
};

static const cli_cmd telemetry_cmds[] = {
	{"show", "DEVICE",
	 "Show a device's last telemetry windows (by id or name): requests, errors, latency percentiles, "
	 "resources and windows its spool dropped; then, for the newest window of each model version, the "
	 "drift of each feature against the version's reference profile.",
	 show_opts, GN_ARRAY_LEN(show_opts), 1, 1, telemetry_show_run},
};

const cli_group cmd_telemetry_group = {"telemetry", "What devices report about the models they serve.", telemetry_cmds,
				       GN_ARRAY_LEN(telemetry_cmds)};
