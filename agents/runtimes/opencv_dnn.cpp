// The OpenCV DNN runtime plugin (ganglion-runtime-opencv.so): runs ONNX models with OpenCV 4.6 on
// the "cpu" and "opencl" targets behind the C ABI of runtime.h.
//
// Every entry point catches all exceptions; errors leave as GANGLION_RT_E* codes and a message.
// cv::dnn::Net::forward() is not re-entrant, so a CPU model holds a small pool of nets (option
// nets, default one per core up to 4) and each infer() borrows one for setInput/forward/copy-out:
// concurrent requests run in parallel, each on its own net. An OpenCL model has one net. The model's interface (names,
// dtypes, shapes) is read from the ONNX file itself by a small protobuf reader below: OpenCV 4.6 has no public API for
// input names.
#include "runtime.h"

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

#include <opencv2/core.hpp>
#include <opencv2/core/ocl.hpp>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/dnn.hpp>

#define PLUGIN_VERSION "0.1.0"

namespace
{

// ---- errors -----------------------------------------------------------------------------------

__attribute__((format(printf, 4, 5))) int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		// one line: OpenCV messages may carry newlines
		for (char *p = err; *p; p++)
			if (*p == '\n' || *p == '\r')
				*p = ' ';
	}
	return code;
}

// The useful part of a cv::Exception ("Can't create layer ..."), without OpenCV's file and line.
std::string cv_message(const cv::Exception &e)
{
	std::string m = e.err.empty() ? std::string(e.what()) : e.err;
	while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
		m.pop_back();
	return m;
}

// Maps the exception in flight to a code and message; call only inside a catch block.
int fail_current(char *err, size_t errlen, const char *what, int cv_code)
{
	try {
		throw;
	} catch (const cv::Exception &e) {
		if (e.code == cv::Error::StsNoMem)
			return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory: %s", what,
				    cv_message(e).c_str());
		return fail(err, errlen, cv_code, "%s: %s", what, cv_message(e).c_str());
	} catch (const std::bad_alloc &) {
		return fail(err, errlen, GANGLION_RT_ENOMEM, "%s: out of memory", what);
	} catch (const std::exception &e) {
		return fail(err, errlen, GANGLION_RT_ERROR, "%s: %s", what, e.what());
	} catch (...) {
		return fail(err, errlen, GANGLION_RT_ERROR, "%s: unknown exception", what);
	}
}

// ---- ONNX interface reader --------------------------------------------------------------------
// Reads only what describe() needs from ModelProto: graph.input (minus initializers, which IR < 4
// models list as inputs), graph.output, each with elem_type and shape. Field numbers are those of
// onnx/onnx.proto3.

struct onnx_tensor {
	std::string name;
	ganglion_rt_dtype dtype = GANGLION_RT_DTYPE_OTHER;
	int ndim = -1; // -1: rank not declared
	int64_t shape[GANGLION_RT_MAX_DIMS] = {0};
};

struct pb_reader {
	const uint8_t *p, *end;
	bool ok = true;

	pb_reader(const void *data, size_t n) : p((const uint8_t *)data), end((const uint8_t *)data + n)
	{
	}
	bool more() const
	{
		return ok && p < end;
	}
	uint64_t varint()
	{
		uint64_t v = 0;
		for (int shift = 0; shift < 64; shift += 7) {
			if (p >= end) {
				ok = false;
				return 0;
			}
			uint8_t b = *p++;
			v |= (uint64_t)(b & 0x7f) << shift;
			if (!(b & 0x80))
				return v;
		}
		ok = false;
		return 0;
	}
	// Reads a field key; returns the field number and sets wire type.
	uint32_t key(int *wire)
	{
		uint64_t k = varint();
		*wire = (int)(k & 7);
		if (k >> 3 == 0 || k >> 3 > UINT32_MAX)
			ok = false;
		return (uint32_t)(k >> 3);
	}
	// A length-delimited field's contents.
	pb_reader sub()
	{
		uint64_t n = varint();
		if (!ok || n > (uint64_t)(end - p)) {
			ok = false;
			return pb_reader(end, 0);
		}
		pb_reader r(p, (size_t)n);
		p += n;
		return r;
	}
	std::string str()
	{
		pb_reader r = sub();
		return ok ? std::string((const char *)r.p, (size_t)(r.end - r.p)) : std::string();
	}
	void skip(int wire)
	{
		switch (wire) {
		case 0: varint(); break;
		case 1: advance(8); break;
		case 2: sub(); break;
		case 5: advance(4); break;
		default: ok = false; // groups (3, 4) are not used by ONNX; anything else is corrupt
		}
	}
	void advance(size_t n)
	{
		if (n > (size_t)(end - p))
			ok = false;
		else
			p += n;
	}
};

ganglion_rt_dtype onnx_dtype(uint64_t t)
{
	switch (t) { // TensorProto.DataType
	case 1: return GANGLION_RT_FLOAT32;
	case 2: return GANGLION_RT_UINT8;
	case 3: return GANGLION_RT_INT8;
	case 6: return GANGLION_RT_INT32;
	case 7: return GANGLION_RT_INT64;
	case 10: return GANGLION_RT_FLOAT16;
	default: return GANGLION_RT_DTYPE_OTHER;
	}
}

// ValueInfoProto{1: name, 2: TypeProto{1: Tensor{1: elem_type, 2: TensorShapeProto{1: Dimension{1: value, 2:
// param}}}}}
bool read_value_info(pb_reader r, onnx_tensor *t, std::string *why)
{
	int w;
	while (r.more()) {
		uint32_t f = r.key(&w);
		if (f == 1 && w == 2) {
			t->name = r.str();
		} else if (f == 2 && w == 2) {
			pb_reader type = r.sub();
			while (type.more()) {
				uint32_t tf = type.key(&w);
				if (tf != 1 || w != 2) {
					type.skip(w);
					continue;
				}
				pb_reader tensor = type.sub();
				while (tensor.more()) {
					uint32_t ef = tensor.key(&w);
					if (ef == 1 && w == 0) {
						t->dtype = onnx_dtype(tensor.varint());
					} else if (ef == 2 && w == 2) {
						pb_reader shape = tensor.sub();
						t->ndim = 0;
						while (shape.more()) {
							uint32_t sf = shape.key(&w);
							if (sf != 1 || w != 2) {
								shape.skip(w);
								continue;
							}
							pb_reader dim = shape.sub();
							int64_t v = -1;
							while (dim.more()) {
								uint32_t df = dim.key(&w);
								if (df == 1 && w == 0)
									v = (int64_t)dim.varint();
								else
									dim.skip(w);
							}
							if (!dim.ok) {
								shape.ok = false;
								break;
							}
							if (t->ndim == GANGLION_RT_MAX_DIMS) {
								*why = "has more than " +
								       std::to_string(GANGLION_RT_MAX_DIMS) +
								       " dimensions";
								return false;
							}
							t->shape[t->ndim++] = v > 0 ? v : -1;
						}
						if (!shape.ok)
							tensor.ok = false;
					} else {
						tensor.skip(w);
					}
				}
				if (!tensor.ok)
					type.ok = false;
			}
			if (!type.ok)
				r.ok = false;
		} else {
			r.skip(w);
		}
	}
	if (!r.ok)
		*why = "is malformed";
	return r.ok;
}

// Fills inputs and outputs from an ONNX file's bytes; false with a reason if it is not ONNX.
bool read_onnx_interface(const char *data, size_t len, std::vector<onnx_tensor> *inputs,
			 std::vector<onnx_tensor> *outputs, std::string *why)
{
	pb_reader model(data, len);
	pb_reader graph(nullptr, 0);
	bool have_graph = false, have_ir = false;
	int w;
	while (model.more()) {
		uint32_t f = model.key(&w);
		if (f == 7 && w == 2) { // ModelProto.graph
			graph = model.sub();
			have_graph = true;
		} else if (f == 1 && w == 0) { // ModelProto.ir_version
			model.varint();
			have_ir = true;
		} else {
			model.skip(w);
		}
	}
	if (!model.ok || !have_graph || !have_ir) {
		*why = "is not an ONNX model (no valid ModelProto with ir_version and graph)";
		return false;
	}
	std::vector<std::string> inits;
	std::vector<onnx_tensor> ins, outs;
	while (graph.more()) {
		uint32_t f = graph.key(&w);
		if ((f == 11 || f == 12) && w == 2) { // GraphProto.input, .output
			onnx_tensor t;
			std::string reason;
			if (!read_value_info(graph.sub(), &t, &reason) || t.name.empty()) {
				*why = std::string("declares a graph ") + (f == 11 ? "input" : "output") + " '" +
				       t.name + "' that " + (reason.empty() ? "has no name" : reason);
				return false;
			}
			(f == 11 ? ins : outs).push_back(t);
		} else if ((f == 5 || f == 15) && w == 2) { // .initializer (TensorProto), .sparse_initializer
			pb_reader init = graph.sub();
			uint32_t name_field = f == 5 ? 8 : 0;
			while (init.more()) {
				uint32_t tf = init.key(&w);
				if (f == 15 && tf == 1 && w == 2) { // SparseTensorProto.values: TensorProto
					pb_reader values = init.sub();
					while (values.more()) {
						uint32_t vf = values.key(&w);
						if (vf == 8 && w == 2)
							inits.push_back(values.str());
						else
							values.skip(w);
					}
				} else if (tf == name_field && w == 2) {
					inits.push_back(init.str());
				} else {
					init.skip(w);
				}
			}
			if (!init.ok)
				graph.ok = false;
		} else {
			graph.skip(w);
		}
	}
	if (!graph.ok) {
		*why = "has a malformed graph";
		return false;
	}
	for (const onnx_tensor &t : ins) {
		bool is_init = false;
		for (const std::string &n : inits)
			is_init = is_init || n == t.name;
		if (!is_init)
			inputs->push_back(t);
	}
	*outputs = outs;
	if (inputs->empty() || outputs->empty()) {
		*why = "has no graph inputs or no graph outputs";
		return false;
	}
	return true;
}

// ---- plugin state -----------------------------------------------------------------------------

std::once_flag init_once;
std::mutex load_lock; // loads are rare; serializing them keeps OpenCL set-up single-threaded
bool opencl_enabled = true;
int init_rc = GANGLION_RT_OK;
std::string init_err;

// Prepares OpenCV's OpenCL for PoCL and other non-GPU devices before the default OpenCL context
// exists (OpenCV reads these variables once, when it creates the context / first sets up a net).
// - OPENCV_DNN_OPENCL_ALLOW_ALL_DEVICES=1: without it DNN uses OpenCL on GPUs only and silently
//   switches other devices (PoCL's CPU device) to the CPU target.
// - OPENCV_OPENCL_DEVICE: OpenCV's default picks a GPU; with none (PoCL only) it finds no device and
//   disables OpenCL. We set ":CPU:" only when the machine has no OpenCL GPU, so a real GPU stays
//   the default. Variables already set by the operator are left alone.
void setup_opencl_env()
{
	setenv("OPENCV_DNN_OPENCL_ALLOW_ALL_DEVICES", "1", 0);
	if (getenv("OPENCV_OPENCL_DEVICE"))
		return;
	bool gpu = false, cpu = false;
	try { // no OpenCL here (or OPENCV_OPENCL_RUNTIME=disabled) is not an error: load() reports it
		if (!cv::ocl::haveOpenCL())
			return;
		std::vector<cv::ocl::PlatformInfo> platforms;
		cv::ocl::getPlatfomsInfo(platforms); // enumerates only; creates no context
		for (const cv::ocl::PlatformInfo &p : platforms) {
			for (int i = 0; i < p.deviceNumber(); i++) {
				cv::ocl::Device d;
				p.getDevice(d, i);
				gpu = gpu || (d.type() & cv::ocl::Device::TYPE_GPU);
				cpu = cpu || (d.type() & cv::ocl::Device::TYPE_CPU);
			}
		}
	} catch (const cv::Exception &) {
		return;
	}
	if (!gpu && cpu)
		setenv("OPENCV_OPENCL_DEVICE", ":CPU:", 0);
}

int opt_nets = 0; // nets per CPU model; 0: one per core, at most 4

struct options {
	int threads = 1; // PITFALLS: OpenCV's own pool oversubscribes small machines with several workers
	int nets = 0;
	bool opencl = true;
	std::string log_level;
};

// Parses init()'s "key=value" options; touches no state, so a refused init() can be retried.
int parse_options(options *o, const char *const *kvs, char *err, size_t errlen)
{
	for (size_t i = 0; kvs && kvs[i]; i++) {
		std::string kv(kvs[i]);
		size_t eq = kv.find('=');
		if (eq == std::string::npos)
			return fail(err, errlen, GANGLION_RT_EINVAL, "option '%.64s' is not key=value", kv.c_str());
		std::string k = kv.substr(0, eq), v = kv.substr(eq + 1);
		if (k == "threads") {
			char *endp;
			long n = strtol(v.c_str(), &endp, 10);
			if (v.empty() || *endp || n < 0 || n > 1024)
				return fail(err, errlen, GANGLION_RT_EINVAL,
					    "option threads=%.64s: need 0 (OpenCV's default) to 1024", v.c_str());
			o->threads = (int)n;
		} else if (k == "nets") {
			char *endp;
			long n = strtol(v.c_str(), &endp, 10);
			if (v.empty() || *endp || n < 0 || n > 64)
				return fail(err, errlen, GANGLION_RT_EINVAL,
					    "option nets=%.64s: need 0 (one per core, at most 4) to 64", v.c_str());
			o->nets = (int)n;
		} else if (k == "opencl") {
			if (v != "on" && v != "off")
				return fail(err, errlen, GANGLION_RT_EINVAL, "option opencl=%.64s: need on or off",
					    v.c_str());
			o->opencl = v == "on";
		} else if (k == "log-level") {
			if (v != "silent" && v != "error" && v != "warning" && v != "info")
				return fail(err, errlen, GANGLION_RT_EINVAL,
					    "option log-level=%.64s: need silent, error, warning or info", v.c_str());
			o->log_level = v;
		} else {
			return fail(err, errlen, GANGLION_RT_EINVAL,
				    "unknown option '%.64s' (known: threads, nets, opencl, log-level)", k.c_str());
		}
	}
	return GANGLION_RT_OK;
}

void do_init(const options &o)
{
	try {
		cv::setNumThreads(o.threads == 0 ? -1 : o.threads);
		opt_nets = o.nets;
		if (!o.log_level.empty()) {
			using namespace cv::utils::logging;
			setLogLevel(o.log_level == "silent"    ? LOG_LEVEL_SILENT
				    : o.log_level == "error"   ? LOG_LEVEL_ERROR
				    : o.log_level == "warning" ? LOG_LEVEL_WARNING
							       : LOG_LEVEL_INFO);
		}
		// opencl=off: never touch OpenCL (no ICD loading, ~60 MB less RSS); cpu nets do not use it
		opencl_enabled = o.opencl;
		if (opencl_enabled)
			setup_opencl_env();
	} catch (...) {
		char buf[256];
		init_rc = fail_current(buf, sizeof(buf), "init", GANGLION_RT_ERROR);
		init_err = buf;
	}
}

// Runs the default init if the agent did not call init() (a contract breach, but harmless here).
int ensure_init(char *err, size_t errlen)
{
	std::call_once(init_once, [] { do_init(options()); });
	if (init_rc)
		return fail(err, errlen, init_rc, "%s", init_err.c_str());
	return GANGLION_RT_OK;
}

} // namespace

// The definition behind runtime.h's opaque handle.
struct ganglion_rt_model {
	// forward() is not re-entrant: each net serves one infer() at a time. nets[0] is the one load()
	// judged the target on; the others (cpu only) are loaded from the same bytes.
	std::vector<cv::dnn::Net> nets;
	std::mutex lock;               // guards idle
	std::condition_variable freed; // a net went back to idle
	std::vector<size_t> idle;      // indexes into nets of those not in use
	bool opencl = false;           // the target really in use
	std::vector<onnx_tensor> in, out;
	std::vector<ganglion_rt_tensor_info> in_info, out_info;
	std::string requested, target, detail;
	ganglion_rt_model_info info{};
};

namespace
{

// Warm-up inputs: zeros in the declared shapes, dynamic dimensions 1 (first) or 32 (others).
void warm_up(ganglion_rt_model *m, cv::dnn::Net &net)
{
	std::vector<cv::Mat> blobs;
	for (const onnx_tensor &t : m->in) {
		std::vector<int> dims;
		for (int i = 0; i < t.ndim; i++)
			dims.push_back(t.shape[i] > 0 ? (int)t.shape[i] : (i == 0 ? 1 : 32));
		if (dims.empty())
			dims.push_back(1);
		blobs.emplace_back((int)dims.size(), dims.data(), CV_32F, cv::Scalar(0));
		net.setInput(blobs.back(), t.name);
	}
	std::vector<cv::String> names;
	for (const onnx_tensor &t : m->out)
		names.push_back(t.name);
	std::vector<cv::Mat> outs;
	net.forward(outs, names);
}

// Says why a net set up for DNN_TARGET_OPENCL did not, or will not, run on OpenCL; "" if it did.
//
// How we know: OpenCV DNN falls back to the CPU silently in two ways, and we check both after the
// warm-up forward() (which is when OpenCV makes its decisions):
// 1. Net-wide: setUpNet() rewrites the net's target to DNN_TARGET_CPU (no OpenCL in the build,
//    device not allowed) and then copies that target into every layer's public `preferableTarget`
//    (allocateLayers). So any layer left at a non-OpenCL target means the net runs on the CPU.
// 2. Per thread: every layer's OpenCL path is guarded by CV_OCL_RUN, i.e. by
//    cv::ocl::useOpenCL() of the calling thread, false when OpenCV found no usable device or
//    OpenCL was switched off. Layers then keep the OpenCL target but run their CPU code. We check
//    useOpenCL() after the warm-up here, and again in infer() on each calling thread.
// A CPU reference comparison cannot tell the targets apart (both are correct, and tiny nets can
// give identical bits) and getPerfProfile() only has timings; the checks above read the very
// state OpenCV's dispatch reads. What they cannot see is a single layer whose forward_ocl() kernel
// declines an unusual configuration and computes that layer on the CPU; the net still runs on the
// OpenCL device, with that layer's data mapped to the host.
std::string opencl_fallback_reason(ganglion_rt_model *m)
{
	if (!cv::ocl::haveOpenCL())
		return "no OpenCL runtime or platform (is an ICD such as pocl-opencl-icd installed?)";
	if (!cv::ocl::useOpenCL() || !cv::ocl::Device::getDefault().available())
		return "OpenCV found no usable OpenCL device (OPENCV_OPENCL_DEVICE='" +
		       std::string(getenv("OPENCV_OPENCL_DEVICE") ? getenv("OPENCV_OPENCL_DEVICE") : "") + "')";
	cv::dnn::Net &net = m->nets[0];
	std::vector<cv::String> layers = net.getLayerNames();
	for (const cv::String &name : layers) {
		cv::Ptr<cv::dnn::Layer> l = net.getLayer(net.getLayerId(name));
		if (l && l->preferableTarget != cv::dnn::DNN_TARGET_OPENCL)
			return "OpenCV switched the net to the CPU (layer '" + name +
			       "'; device not allowed? OPENCV_DNN_OPENCL_ALLOW_ALL_DEVICES=1 allows all)";
	}
	return "";
}

const char *dtype_name(ganglion_rt_dtype t)
{
	switch (t) {
	case GANGLION_RT_FLOAT32: return "float32";
	case GANGLION_RT_FLOAT16: return "float16";
	case GANGLION_RT_INT8: return "int8";
	case GANGLION_RT_UINT8: return "uint8";
	case GANGLION_RT_INT32: return "int32";
	case GANGLION_RT_INT64: return "int64";
	default: return "an unsupported type";
	}
}

std::string shape_str(int ndim, const int64_t *shape)
{
	std::string s = "[";
	for (int i = 0; i < ndim; i++)
		s += (i ? "," : "") + std::to_string(shape[i]);
	return s + "]";
}

void fill_info(ganglion_rt_model *m)
{
	for (const onnx_tensor &t : m->in) {
		ganglion_rt_tensor_info ti{t.name.c_str(), t.dtype, t.ndim, {0}};
		memcpy(ti.shape, t.shape, sizeof(ti.shape));
		m->in_info.push_back(ti);
	}
	for (const onnx_tensor &t : m->out) {
		ganglion_rt_tensor_info ti{t.name.c_str(), t.dtype, t.ndim, {0}};
		memcpy(ti.shape, t.shape, sizeof(ti.shape));
		m->out_info.push_back(ti);
	}
	m->info.requested_target = m->requested.c_str();
	m->info.target = m->target.c_str();
	m->info.target_detail = m->detail.c_str();
	m->info.n_inputs = m->in_info.size();
	m->info.inputs = m->in_info.data();
	m->info.n_outputs = m->out_info.size();
	m->info.outputs = m->out_info.data();
}

int read_file(std::vector<char> *out, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, errlen, errno == ENOENT ? GANGLION_RT_ENOTFOUND : GANGLION_RT_ERROR, "%s: %s", path,
			    strerror(errno));
	struct stat st;
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(f);
		return fail(err, errlen, GANGLION_RT_EINVAL, "%s: not a regular file", path);
	}
	int rc = GANGLION_RT_OK;
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		out->insert(out->end(), chunk, chunk + n);
	if (ferror(f))
		rc = fail(err, errlen, GANGLION_RT_ERROR, "%s: %s", path, strerror(errno));
	fclose(f);
	return rc;
}

int check_target(const char *target, char *err, size_t errlen)
{
	if (strcmp(target, "opencl") != 0 && strcmp(target, "cpu") != 0)
		return fail(err, errlen, GANGLION_RT_EUNSUPPORTED,
			    "target '%.32s' is not supported (opencv-dnn runs cpu and opencl)", target);
	return GANGLION_RT_OK;
}

// Loads a model from its bytes (borrowed for the call; OpenCV copies what it keeps). name says
// what the bytes are in messages: a path, or what load_buffer() was told.
int load_model(ganglion_rt_model **out, const char *data, size_t len, const char *name, const char *target, char *err,
	       size_t errlen)
{
	bool want_opencl = strcmp(target, "opencl") == 0;
	int rc = check_target(target, err, errlen);
	if (rc)
		return rc;
	std::unique_ptr<ganglion_rt_model> m(new ganglion_rt_model);
	std::string why;
	if (!read_onnx_interface(data, len, &m->in, &m->out, &why))
		return fail(err, errlen, GANGLION_RT_EMODEL, "%s %s", name, why.c_str());
	for (const onnx_tensor &t : m->in) {
		if (t.dtype != GANGLION_RT_FLOAT32)
			return fail(err, errlen, GANGLION_RT_EUNSUPPORTED,
				    "%s: input '%s' is %s; this runtime takes float32 inputs only", name,
				    t.name.c_str(), dtype_name(t.dtype));
		if (t.ndim < 1)
			return fail(err, errlen, GANGLION_RT_EUNSUPPORTED, "%s: input '%s' declares no shape", name,
				    t.name.c_str());
	}
	try {
		m->nets.push_back(cv::dnn::readNetFromONNX(data, len));
	} catch (...) {
		return fail_current(err, errlen, name, GANGLION_RT_EMODEL);
	}
	cv::dnn::Net &net = m->nets[0];
	if (net.empty())
		return fail(err, errlen, GANGLION_RT_EMODEL, "%s: OpenCV read no layers from it", name);
	net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
	m->requested = target;
	m->target = "cpu";

	std::lock_guard<std::mutex> g(load_lock);
	if (want_opencl && !opencl_enabled) {
		m->detail = "OpenCL is switched off (plugin option opencl=off)";
	} else if (want_opencl && !cv::ocl::haveOpenCL()) {
		m->detail = "no OpenCL runtime or platform (is an ICD such as pocl-opencl-icd installed?)";
	} else if (want_opencl) {
		net.setPreferableTarget(cv::dnn::DNN_TARGET_OPENCL);
		try {
			warm_up(m.get(), net);
			m->detail = opencl_fallback_reason(m.get());
		} catch (const cv::Exception &e) {
			m->detail = "OpenCL warm-up failed: " + cv_message(e);
		}
		if (m->detail.empty()) {
			m->opencl = true;
			m->target = "opencl";
		} else {
			m->detail = "requested opencl, running on cpu: " + m->detail;
		}
	}
	if (!m->opencl) {
		net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU); // re-sets the net up at the next forward
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		size_t n = opt_nets ? (size_t)opt_nets : (size_t)(cores < 1 ? 1 : cores > 4 ? 4 : cores);
		try {
			warm_up(m.get(), net);
			// the others after the first worked: a bad model fails once, not n times
			for (size_t i = 1; i < n; i++) {
				m->nets.push_back(cv::dnn::readNetFromONNX(data, len));
				m->nets.back().setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
				m->nets.back().setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
				warm_up(m.get(), m->nets.back());
			}
		} catch (...) {
			return fail_current(err, errlen, name, GANGLION_RT_EMODEL);
		}
	}
	for (size_t i = 0; i < m->nets.size(); i++)
		m->idle.push_back(i);
	fill_info(m.get());
	*out = m.release();
	return GANGLION_RT_OK;
}

// Checks a caller's shape against a declared one (-1 matches anything); returns the element count
// or -1 when it does not fit.
int64_t match_shape(const onnx_tensor &t, int ndim, const int64_t *shape)
{
	if (ndim < 1 || ndim > GANGLION_RT_MAX_DIMS || (t.ndim >= 0 && ndim != t.ndim))
		return -1;
	int64_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 1 || shape[i] > INT_MAX || (t.ndim >= 0 && t.shape[i] > 0 && t.shape[i] != shape[i]))
			return -1;
		if (n > INT64_MAX / shape[i])
			return -1;
		n *= shape[i];
	}
	return n;
}

int infer_model(ganglion_rt_model *m, const ganglion_rt_input *inputs, size_t n_inputs, ganglion_rt_output *outputs,
		size_t n_outputs, char *err, size_t errlen)
{
	if (n_inputs != m->in.size())
		return fail(err, errlen, GANGLION_RT_EINVAL, "got %zu inputs, the model has %zu", n_inputs,
			    m->in.size());
	if (n_outputs < 1 || n_outputs > m->out.size())
		return fail(err, errlen, GANGLION_RT_EINVAL, "asked for %zu outputs, the model has %zu", n_outputs,
			    m->out.size());
	// Check everything before taking the lock; blobs only wrap the caller's memory (no copy:
	// setInput copies it into the net).
	std::vector<cv::Mat> blobs(m->in.size());
	std::vector<bool> seen(m->in.size(), false);
	for (size_t i = 0; i < n_inputs; i++) {
		const ganglion_rt_input &in = inputs[i];
		size_t k = 0;
		while (k < m->in.size() && (!in.name || m->in[k].name != in.name))
			k++;
		if (k == m->in.size() || seen[k])
			return fail(err, errlen, GANGLION_RT_EINVAL, "input '%.64s' is %s",
				    in.name ? in.name : "(null)",
				    k == m->in.size() ? "not an input of the model" : "given twice");
		seen[k] = true;
		if (match_shape(m->in[k], in.ndim, in.shape) < 0)
			return fail(err, errlen, GANGLION_RT_EINVAL, "input '%s' has shape %s, the model needs %s",
				    in.name,
				    shape_str(in.ndim >= 0 && in.ndim <= GANGLION_RT_MAX_DIMS ? in.ndim : 0, in.shape)
					    .c_str(),
				    shape_str(m->in[k].ndim, m->in[k].shape).c_str());
		if (!in.data)
			return fail(err, errlen, GANGLION_RT_EINVAL, "input '%s' has no data", in.name);
		int dims[GANGLION_RT_MAX_DIMS];
		for (int d = 0; d < in.ndim; d++)
			dims[d] = (int)in.shape[d];
		blobs[k] = cv::Mat(in.ndim, dims, CV_32F, const_cast<float *>(in.data));
	}
	std::vector<cv::String> names;
	std::vector<size_t> out_idx;
	for (size_t i = 0; i < n_outputs; i++) {
		size_t k = 0;
		while (k < m->out.size() && (!outputs[i].name || m->out[k].name != outputs[i].name))
			k++;
		if (k == m->out.size())
			return fail(err, errlen, GANGLION_RT_EINVAL, "output '%.64s' is not an output of the model",
				    outputs[i].name ? outputs[i].name : "(null)");
		for (size_t j : out_idx)
			if (j == k)
				return fail(err, errlen, GANGLION_RT_EINVAL, "output '%s' is asked for twice",
					    outputs[i].name);
		out_idx.push_back(k);
		names.push_back(m->out[k].name);
	}

	// Borrow an idle net for the run; it goes back however this function leaves.
	struct borrowed {
		ganglion_rt_model *m;
		size_t i;
		explicit borrowed(ganglion_rt_model *model) : m(model)
		{
			std::unique_lock<std::mutex> g(m->lock);
			m->freed.wait(g, [this] { return !m->idle.empty(); });
			i = m->idle.back();
			m->idle.pop_back();
		}
		~borrowed()
		{
			{
				std::lock_guard<std::mutex> g(m->lock);
				m->idle.push_back(i);
			}
			m->freed.notify_one();
		}
	} b(m);
	cv::dnn::Net &net = m->nets[b.i];
	// useOpenCL() is per thread (see opencl_fallback_reason): a thread where OpenCL is off would
	// run the layers' CPU code while the model claims opencl. Refuse rather than misreport.
	if (m->opencl && !cv::ocl::useOpenCL()) {
		cv::ocl::setUseOpenCL(true);
		if (!cv::ocl::useOpenCL())
			return fail(err, errlen, GANGLION_RT_ERROR, "OpenCL is not usable on this thread");
	}
	for (size_t k = 0; k < m->in.size(); k++)
		net.setInput(blobs[k], m->in[k].name);
	std::vector<cv::Mat> res;
	net.forward(res, names);
	if (res.size() != n_outputs)
		return fail(err, errlen, GANGLION_RT_ERROR, "OpenCV returned %zu outputs for %zu names", res.size(),
			    n_outputs);
	// The results alias the net's buffers: copy out before the net goes back.
	int rc = GANGLION_RT_OK;
	for (size_t i = 0; i < n_outputs; i++) {
		ganglion_rt_output &o = outputs[i];
		const onnx_tensor &decl = m->out[out_idx[i]];
		cv::Mat r = res[i];
		if (r.depth() != CV_32F)
			r.convertTo(r, CV_32F);
		if (!r.isContinuous())
			r = r.clone();
		int64_t total = (int64_t)r.total();
		// OpenCV sometimes drops or adds unit dimensions; report the declared shape when it is
		// static and holds the same number of elements, else OpenCV's.
		int64_t decl_total = 1;
		for (int d = 0; d < decl.ndim; d++)
			decl_total = decl.shape[d] > 0 && decl_total > 0 ? decl_total * decl.shape[d] : -1;
		if (decl.ndim >= 1 && decl_total == total) {
			o.ndim = decl.ndim;
			memcpy(o.shape, decl.shape, sizeof(o.shape));
		} else if (r.dims <= GANGLION_RT_MAX_DIMS) {
			o.ndim = r.dims;
			for (int d = 0; d < r.dims; d++)
				o.shape[d] = r.size[d];
		} else {
			return fail(err, errlen, GANGLION_RT_ERROR, "output '%s' has %d dimensions", o.name, r.dims);
		}
		if ((uint64_t)total > o.capacity) {
			rc = fail(err, errlen, GANGLION_RT_ESPACE,
				  "output '%s' needs %lld floats, the buffer holds %zu", o.name, (long long)total,
				  o.capacity);
			continue;
		}
		if (!o.data)
			return fail(err, errlen, GANGLION_RT_EINVAL, "output '%s' has no buffer", o.name);
		memcpy(o.data, r.ptr<float>(), (size_t)total * sizeof(float));
	}
	return rc;
}

uint64_t meminfo_available()
{
	FILE *f = fopen("/proc/meminfo", "r");
	if (!f)
		return 0;
	char line[256];
	unsigned long long kb = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

std::string cpu_model()
{
	std::ifstream f("/proc/cpuinfo");
	std::string line;
	while (std::getline(f, line))
		if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos)
			return line.substr(line.find(':') + 2);
	return "";
}

// ---- the C entry points -----------------------------------------------------------------------

int rt_init(const char *const *kvs, char *err, size_t errlen)
{
	options o;
	int rc = parse_options(&o, kvs, err, errlen);
	if (rc)
		return rc;
	bool ran = false;
	std::call_once(init_once, [&] {
		do_init(o);
		ran = true;
	});
	if (!ran)
		return fail(err, errlen, GANGLION_RT_EINVAL, "init was already called");
	return ensure_init(err, errlen);
}

int rt_capabilities(ganglion_rt_caps *out, char *err, size_t errlen)
{
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "capabilities: out is NULL");
	int rc = ensure_init(err, errlen);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	try {
		ganglion_rt_target_caps *c = &out->targets[out->n_targets++];
		snprintf(c->name, sizeof(c->name), "cpu");
		std::string model = cpu_model();
		snprintf(c->device, sizeof(c->device), "%s%s%d threads", model.c_str(), model.empty() ? "" : ", ",
			 cv::getNumberOfCPUs());
		long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
		c->mem_total_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
		c->mem_available_bytes = meminfo_available();

		std::lock_guard<std::mutex> g(load_lock);
		if (opencl_enabled && cv::ocl::haveOpenCL()) {
			const cv::ocl::Device &d = cv::ocl::Device::getDefault(); // creates the context once
			if (d.available()) {
				c = &out->targets[out->n_targets++];
				snprintf(c->name, sizeof(c->name), "opencl");
				snprintf(c->device, sizeof(c->device), "%s", d.name().c_str());
				c->mem_total_bytes = (uint64_t)d.globalMemSize();
			}
		}
	} catch (...) {
		return fail_current(err, errlen, "capabilities", GANGLION_RT_ERROR);
	}
	return GANGLION_RT_OK;
}

int rt_load(ganglion_rt_model **out, const char *path, const char *target, char *err, size_t errlen)
{
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load: out is NULL");
	*out = nullptr;
	if (!path || !target)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load: path and target are required");
	int rc = ensure_init(err, errlen);
	if (rc)
		return rc;
	try {
		std::vector<char> buf;
		if ((rc = check_target(target, err, errlen)) || (rc = read_file(&buf, path, err, errlen)))
			return rc;
		return load_model(out, buf.data(), buf.size(), path, target, err, errlen);
	} catch (...) {
		return fail_current(err, errlen, path, GANGLION_RT_EMODEL);
	}
}

int rt_load_buffer(ganglion_rt_model **out, const void *data, size_t len, const char *name, const char *target,
		   char *err, size_t errlen)
{
	if (!out)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load_buffer: out is NULL");
	*out = nullptr;
	if (!data || !target)
		return fail(err, errlen, GANGLION_RT_EINVAL, "load_buffer: data and target are required");
	if (!name)
		name = "model";
	int rc = ensure_init(err, errlen);
	if (rc)
		return rc;
	try {
		return load_model(out, static_cast<const char *>(data), len, name, target, err, errlen);
	} catch (...) {
		return fail_current(err, errlen, name, GANGLION_RT_EMODEL);
	}
}

const ganglion_rt_model_info *rt_describe(const ganglion_rt_model *model)
{
	return model ? &model->info : nullptr;
}

int rt_infer(ganglion_rt_model *model, const ganglion_rt_input *inputs, size_t n_inputs, ganglion_rt_output *outputs,
	     size_t n_outputs, char *err, size_t errlen)
{
	if (!model || (n_inputs && !inputs) || (n_outputs && !outputs))
		return fail(err, errlen, GANGLION_RT_EINVAL, "infer: model, inputs and outputs are required");
	try {
		return infer_model(model, inputs, n_inputs, outputs, n_outputs, err, errlen);
	} catch (...) {
		return fail_current(err, errlen, "infer", GANGLION_RT_ERROR);
	}
}

void rt_free_model(ganglion_rt_model *model)
{
	try {
		delete model;
	} catch (...) {
		// a destructor that throws: nothing sensible to do but not let it cross the boundary
	}
}

const char *const formats[] = {"onnx", nullptr};

// OpenCV 4.6 declares no highest opset. Its ONNX importer (modules/dnn/src/onnx/onnx_importer.cpp,
// ONNXImporter::parseOperatorSet) reads the default domain's opset from the model only to choose how
// to parse operators whose form changed, and refuses forms it does not know when it meets them. The
// highest opset it names is 13: for reduce operators in the form opset 13 gave them, Debian's
// libopencv_dnn.so.4.6.0 says "Unsupported ... operation of opset 13, please try to re-export the
// onnx model with opset 11" (`strings` of the library). So 13 is what we report: a release stamped 14 or later is
// refused before download, one stamped 12 or 13 is let through and its load decides.
int rt_onnx_opset(void)
{
	return 13;
}

const ganglion_runtime table = {
	GANGLION_RUNTIME_ABI_VERSION,
	sizeof(ganglion_runtime),
	"opencv-dnn",
	PLUGIN_VERSION " (OpenCV " CV_VERSION ")",
	formats,
	rt_init,
	rt_capabilities,
	rt_load,
	rt_describe,
	rt_infer,
	rt_free_model,
	rt_load_buffer,
	rt_onnx_opset,
};

} // namespace

// The plugin's one exported symbol.
extern "C" GANGLION_RT_EXPORT const ganglion_runtime *ganglion_runtime_v1(void)
{
	return &table;
}
