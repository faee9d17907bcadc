/* Fuzz target: requests to the agent's local inference endpoint (agents/serve.c, agents/shape.c):
 * the real endpoint on a Unix socket in this process, linked with the agent's own objects, in
 * front of a stand-in runtime plugin (the runtime.h ABI, which every plugin implements). The
 * input's first byte picks the loaded model's interface (one fixed input, a dynamic dimension,
 * two inputs with several dynamic dimensions, no declared shape, ...); then come a request line
 * ("POST /v1/models/det/infer"), a Content-Type line (empty: none) and the body.
 *
 * Properties: the agent hands the runtime only what runtime.h allows: every input of the model
 * once, with as many dimensions as it declares and its fixed dimensions as declared, every
 * dimension at least 1, and exactly the values its shape holds (all of them read here, so a short
 * buffer is a sanitizer report); output buffers as large as their stated capacity. Every answer
 * is an HTTP response. */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "fuzz.h"
#include "log.h"

/* The stand-in plugin's models: an interface each. */
static const ganglion_rt_tensor_info x14[] = {{"x", GANGLION_RT_FLOAT32, 2, {1, 4}}},
				     y12[] = {{"y", GANGLION_RT_FLOAT32, 2, {1, 2}}},
				     xdyn[] = {{"x", GANGLION_RT_FLOAT32, 2, {-1, 3}}},
				     ydyn[] = {{"y", GANGLION_RT_FLOAT32, 1, {-1}}},
				     two_in[] = {{"a", GANGLION_RT_FLOAT32, 3, {-1, -1, 2}},
						 {"b", GANGLION_RT_FLOAT32, 1, {2}}},
				     two_out[] = {{"o1", GANGLION_RT_FLOAT32, 1, {-1}},
						  {"o2", GANGLION_RT_FLOAT32, 3, {1, -1, 5}}},
				     noshape[] = {{"x", GANGLION_RT_FLOAT32, -1, {0}}},
				     zeros[] = {{"x", GANGLION_RT_FLOAT32, 2, {0, 0}}},
				     scalar[] = {{"s", GANGLION_RT_FLOAT32, 0, {0}}};
static const ganglion_rt_model_info models[] = {
	{"cpu", "cpu", "", 1, x14, 1, y12},        {"cpu", "cpu", "", 1, xdyn, 1, ydyn},
	{"cpu", "cpu", "", 2, two_in, 2, two_out}, {"cpu", "cpu", "", 1, noshape, 1, ydyn},
	{"cpu", "cpu", "", 1, zeros, 1, scalar},
};

struct ganglion_rt_model {
	const ganglion_rt_model_info *info;
};

static int rt_load_buffer(ganglion_rt_model **out, const void *data, size_t len, const char *name, const char *target,
			  char *err, size_t errlen)
{
	unsigned char i = len ? ((const unsigned char *)data)[0] : 0;
	*out = gn_calloc(1, sizeof(**out));
	(*out)->info = &models[i % GN_ARRAY_LEN(models)];
	return GANGLION_RT_OK;
}

static const ganglion_rt_model_info *rt_describe(const ganglion_rt_model *m)
{
	return m->info;
}

static size_t product(const int64_t *shape, int ndim)
{
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		n *= (size_t)shape[d];
	return n;
}

/* Checks the inputs against runtime.h's rules; returns their values' sum. */
static float check_inputs(const ganglion_rt_model_info *info, const ganglion_rt_input *in, size_t nin)
{
	float sum = 0;
	FUZZ_CHECK(nin == info->n_inputs, "%zu inputs for a model of %zu", nin, info->n_inputs);
	for (size_t i = 0; i < nin; i++) {
		const ganglion_rt_tensor_info *ti = NULL;
		for (size_t k = 0; k < info->n_inputs && !ti; k++)
			if (strcmp(info->inputs[k].name, in[i].name) == 0)
				ti = &info->inputs[k];
		FUZZ_CHECK(ti, "input '%s' is not the model's", in[i].name);
		for (size_t k = 0; k < i; k++)
			FUZZ_CHECK(strcmp(in[k].name, in[i].name) != 0, "input '%s' twice", in[i].name);
		FUZZ_CHECK(in[i].ndim >= 1 && in[i].ndim <= GANGLION_RT_MAX_DIMS, "input '%s' of %d dimensions",
			   in[i].name, in[i].ndim);
		FUZZ_CHECK(ti->ndim < 0 || in[i].ndim == ti->ndim, "input '%s' of %d dimensions, the model has %d",
			   in[i].name, in[i].ndim, ti->ndim);
		for (int d = 0; d < in[i].ndim; d++) {
			FUZZ_CHECK(in[i].shape[d] >= 1, "input '%s' dimension %d is %lld", in[i].name, d,
				   (long long)in[i].shape[d]);
			FUZZ_CHECK(ti->ndim < 0 || ti->shape[d] <= 0 || in[i].shape[d] == ti->shape[d],
				   "input '%s' dimension %d is %lld, the model fixes %lld", in[i].name, d,
				   (long long)in[i].shape[d], (long long)ti->shape[d]);
		}
		size_t n = product(in[i].shape, in[i].ndim);
		for (size_t k = 0; k < n; k++)
			sum += in[i].data[k];
	}
	return sum;
}

static int rt_infer(ganglion_rt_model *m, const ganglion_rt_input *in, size_t nin, ganglion_rt_output *out, size_t nout,
		    char *err, size_t errlen)
{
	float sum = check_inputs(m->info, in, nin);
	/* Outputs as big as the first input (a batch), which may exceed the agent's first guess. */
	size_t need = product(in[0].shape, in[0].ndim);
	int rc = GANGLION_RT_OK;
	for (size_t o = 0; o < nout; o++) {
		out[o].ndim = 1;
		out[o].shape[0] = (int64_t)need;
		if (out[o].capacity < need) {
			rc = GANGLION_RT_ESPACE;
			continue;
		}
		for (size_t k = 0; k < out[o].capacity; k++) /* the whole stated capacity is writable */
			out[o].data[k] = k < need ? sum : 0;
	}
	if (rc)
		snprintf(err, errlen, "output buffer too small");
	return rc;
}

static void rt_free_model(ganglion_rt_model *m)
{
	free(m);
}

static const ganglion_runtime fake_rt = {
	.abi_version = GANGLION_RUNTIME_ABI_VERSION,
	.struct_size = sizeof(ganglion_runtime),
	.name = "fuzz",
	.version = "0",
	.describe = rt_describe,
	.infer = rt_infer,
	.free_model = rt_free_model,
	.load_buffer = rt_load_buffer,
};

static struct agent a;
static char dir[] = "/tmp/gn-fuzz-agent-XXXXXX";
static int loaded = -1;

static void stop(void)
{
	serve_stop(&a);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	gn_err err;
	FUZZ_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	FUZZ_CHECK(gn_conf_defaults(&agent_config_table, &a.cfg, &err) == 0, "%s", err.msg);
	free(a.cfg.data_dir);
	free(a.cfg.socket_path);
	a.cfg.data_dir = gn_strdup(dir);
	a.cfg.socket_path = gn_asprintf("%s/infer.sock", dir);
	a.cfg.max_infer_body = 1 << 20;
	a.rt = &fake_rt;
	pthread_mutex_init(&a.lock, NULL);
	pthread_mutex_init(&a.update_lock, NULL);
	gn_log_set_level(GN_LOG_ERROR);
	FUZZ_CHECK(serve_start(&a, &err) == 0, "%s", err.msg);
	atexit(stop);
	return 0;
}

/* Makes the model with interface i the version of det that serves. */
static void load(int i)
{
	unsigned char byte = (unsigned char)i;
	struct models_file bytes = {&byte, 1};
	char sha[GN_SHA256_HEX_LEN + 1];
	struct agent_model *m = NULL;
	gn_err err;
	gn_sha256_hex(sha, &byte, 1);
	FUZZ_CHECK(models_load(&m, &a, &bytes, "det", "1.0.0", sha, &err) == 0, "%s", err.msg);
	models_swap(&a, models_slot(&a, "det", true), m);
	loaded = i;
}

/* Splits off the text up to the next '\n' of *p (n bytes left); NULL if there is none. */
static const char *line(const char **p, size_t *n, size_t *out_len)
{
	const char *nl = memchr(*p, '\n', *n), *s = *p;
	if (!nl)
		return NULL;
	*out_len = (size_t)(nl - s);
	*n -= *out_len + 1;
	*p = nl + 1;
	return s;
}

static bool clean(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] == '\r' || s[i] == '\0')
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t rlen, clen, n;
	const char *p, *req, *ct;
	if (size < 1)
		return 0;
	p = (const char *)data + 1;
	n = size - 1;
	if (!(req = line(&p, &n, &rlen)) || !(ct = line(&p, &n, &clen)) || !clean(req, rlen) || !clean(ct, clen) ||
	    !memchr(req, ' ', rlen))
		return 0;
	if (loaded != data[0] % (int)GN_ARRAY_LEN(models))
		load(data[0] % (int)GN_ARRAY_LEN(models));
	gn_buf b;
	gn_buf_init(&b);
	gn_buf_printf(&b, "%.*s HTTP/1.1\r\nHost: agent\r\nConnection: close\r\nContent-Length: %zu\r\n", (int)rlen,
		      req, n);
	if (clen)
		gn_buf_printf(&b, "Content-Type: %.*s\r\n", (int)clen, ct);
	gn_buf_puts(&b, "\r\n");
	gn_buf_append(&b, p, n);

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a.cfg.socket_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	FUZZ_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "cannot connect to the agent");
	for (size_t off = 0; off < b.len;) {
		ssize_t w = send(fd, b.data + off, b.len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	shutdown(fd, SHUT_WR);
	char buf[65536], head[9];
	size_t got = 0;
	ssize_t r;
	while ((r = read(fd, buf, sizeof(buf))) > 0) {
		for (size_t i = 0; i < (size_t)r && got + i < sizeof(head); i++)
			head[got + i] = buf[i];
		got += (size_t)r;
	}
	close(fd);
	if (getenv("FUZZ_VERBOSE")) /* to see what the seeds get */
		fprintf(stderr, "%.*s: %.*s\n", (int)rlen, req, (int)(got < sizeof(head) ? 0 : sizeof(head)), head);
	FUZZ_CHECK(got == 0 || (got >= sizeof(head) && memcmp(head, "HTTP/1.1 ", 9) == 0), "not an HTTP answer");
	gn_buf_cleanup(&b);
	return 0;
}
