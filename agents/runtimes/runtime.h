/* The inference-runtime plugin ABI of ganglion-agent, version 1 (revision 3: onnx_opset).
 *
 * A runtime plugin is a shared object that the agent loads with dlopen(RTLD_NOW | RTLD_LOCAL).
 * It exports exactly one symbol, GANGLION_RUNTIME_ENTRY ("ganglion_runtime_v1"), a function that
 * returns a pointer to a constant table (struct ganglion_runtime) of data and function pointers.
 * Everything else in the plugin should be hidden (-fvisibility=hidden); mark the entry point with
 * GANGLION_RT_EXPORT.
 *
 * This header is the whole contract: a plugin includes it and nothing else from Ganglion. It is
 * plain C11 and may be included from C++ (the declarations get C linkage).
 *
 * Conventions, for every function in the table:
 * - Return codes: 0 (GANGLION_RT_OK) on success, a negative GANGLION_RT_E* code on failure.
 * - Error messages: functions that can fail take `char *err, size_t errlen`. On failure the plugin
 *   writes one NUL-terminated line (no trailing newline, truncated to errlen - 1 bytes) that says
 *   what failed and why, e.g. "model.onnx: input 'x' has shape [1,5], the model needs [1,4]". err may
 *   be NULL or errlen 0: then no message is written. On success err's contents are unspecified.
 *   The agent passes 8192 bytes to load_buffer() (a loader's diagnosis can be long; it reaches the
 *   server whole) and 1024 to infer().
 * - Nothing crosses the boundary but return codes: no C++ exceptions, no longjmp, no abort() or
 *   exit() on bad input, bad files or backend failures. A plugin written in C++ catches every
 *   exception (catch (...)) in each entry point.
 * - A plugin does not print to stdout, does not install signal handlers, and changes no
 *   process-wide state except what its init() documents (environment variables it sets, thread
 *   pool sizes of its backend). Its backend may log to stderr; the agent's stderr goes to journald.
 * - Ownership: a model handle is new (the caller releases it with free_model()); pointers the
 *   plugin returns (strings in the table, describe()'s result) are borrowed and stay valid for the
 *   stated lifetime; buffers the caller passes in are the caller's and are never kept after the
 *   call returns.
 *
 * Versioning: GANGLION_RUNTIME_ABI_VERSION changes, and the entry symbol's name with it, whenever
 * a change would break an existing plugin or agent. Fields may be appended to struct
 * ganglion_runtime within a version; the agent checks abi_version == GANGLION_RUNTIME_ABI_VERSION and
 * struct_size >= the size it needs, so a plugin sets struct_size = sizeof(struct ganglion_runtime).
 * Revisions of version 1 (GANGLION_RUNTIME_ABI_REVISION, for documentation; struct_size tells):
 *   1  the table up to free_model.
 *   2  load_buffer appended. An agent of revision 2 requires it: it loads only bytes it holds in
 *      memory and has hashed, so that no file can change between the check and the load
 *      (time-of-check to time-of-use). A revision-1 plugin is refused with a request to rebuild.
 *   3  onnx_opset appended, optional: a revision-2 plugin (struct_size without it) or a NULL
 *      pointer just reports no opset. The agent checks struct_size against each field it reads
 *      past load_buffer, so plugins of revision 2 and 3 both load. */
#ifndef GANGLION_RUNTIME_H
#define GANGLION_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GANGLION_RUNTIME_ABI_VERSION 1
/* The revision of version 1 this header describes (see Versioning above). */
#define GANGLION_RUNTIME_ABI_REVISION 3
/* The one symbol a plugin exports; its type is ganglion_runtime_entry_fn. */
#define GANGLION_RUNTIME_ENTRY "ganglion_runtime_v1"

/* Put in front of the entry point's definition so it stays visible under -fvisibility=hidden. */
#define GANGLION_RT_EXPORT __attribute__((visibility("default")))

/* Return codes. -2 and -3 have the same values as libganglion's GN_EINVAL and GN_ENOTFOUND. */
enum {
	GANGLION_RT_OK = 0,
	GANGLION_RT_ERROR = -1,         /* anything not listed below: a backend failure */
	GANGLION_RT_EINVAL = -2,        /* bad argument: NULL, unknown tensor name, wrong shape, bad option */
	GANGLION_RT_ENOTFOUND = -3,     /* the model file does not exist or cannot be opened */
	GANGLION_RT_EUNSUPPORTED = -10, /* target, format or dtype this plugin does not handle */
	GANGLION_RT_EMODEL = -11,       /* the file is not a model this runtime can load (corrupt, unknown op) */
	GANGLION_RT_ESPACE = -12,       /* an output buffer is too small; its shape says what is needed */
	GANGLION_RT_ENOMEM = -13,       /* out of host or device memory */
};

/* Most dimensions of a tensor; more is GANGLION_RT_EUNSUPPORTED at load time. */
#define GANGLION_RT_MAX_DIMS 8
/* Most targets one plugin reports in capabilities(). */
#define GANGLION_RT_MAX_TARGETS 8

/* Element types as the model declares them. infer() exchanges float32 only in ABI v1. */
typedef enum ganglion_rt_dtype {
	GANGLION_RT_DTYPE_OTHER = 0,
	GANGLION_RT_FLOAT32 = 1,
	GANGLION_RT_FLOAT16 = 2,
	GANGLION_RT_INT8 = 3,
	GANGLION_RT_UINT8 = 4,
	GANGLION_RT_INT32 = 5,
	GANGLION_RT_INT64 = 6,
} ganglion_rt_dtype;

/* A loaded model. Opaque: each plugin defines struct ganglion_rt_model for itself. */
typedef struct ganglion_rt_model ganglion_rt_model;

/* One target the plugin can run on, as found on this machine when capabilities() was called. */
typedef struct ganglion_rt_target_caps {
	char name[16];                /* "cpu", "opencl", "cuda", ...: what load() accepts as target */
	char device[128];             /* human-readable device name ("pthread-skylake-avx512"), "" if unknown */
	uint64_t mem_total_bytes;     /* memory of that device; 0 if unknown */
	uint64_t mem_available_bytes; /* free now; 0 if unknown */
} ganglion_rt_target_caps;

/* What the plugin can do here. Filled by capabilities(); the caller owns it (no pointers inside). */
typedef struct ganglion_rt_caps {
	size_t n_targets; /* targets[0 .. n_targets-1]; "cpu" first when supported */
	ganglion_rt_target_caps targets[GANGLION_RT_MAX_TARGETS];
} ganglion_rt_caps;

/* A tensor as the model declares it. */
typedef struct ganglion_rt_tensor_info {
	const char *name;
	ganglion_rt_dtype dtype;
	int32_t ndim;
	int64_t shape[GANGLION_RT_MAX_DIMS]; /* -1 for a dynamic dimension */
} ganglion_rt_tensor_info;

/* A loaded model's interface and where it runs. Owned by the model: immutable and valid until
 * free_model(), so it may be read from any thread without locking. */
typedef struct ganglion_rt_model_info {
	const char *requested_target; /* the target load() was asked for */
	const char *target;           /* the target that really runs the model (see load()) */
	const char *target_detail;    /* why target differs from requested_target, or what part of the
				       * model runs elsewhere (an accelerator that took only some of its
				       * nodes); "" when all of it runs on the requested target */
	size_t n_inputs;
	const ganglion_rt_tensor_info *inputs;
	size_t n_outputs;
	const ganglion_rt_tensor_info *outputs;
} ganglion_rt_model_info;

/* An input of infer(): data holds the product of shape[0 .. ndim-1] float32 values, row-major. */
typedef struct ganglion_rt_input {
	const char *name; /* a name from describe()'s inputs */
	int32_t ndim;
	int64_t shape[GANGLION_RT_MAX_DIMS];
	const float *data;
} ganglion_rt_input;

/* An output of infer(). The caller sets name, data and capacity; the plugin sets ndim and shape
 * and writes the values, row-major. */
typedef struct ganglion_rt_output {
	const char *name;                    /* a name from describe()'s outputs */
	int32_t ndim;                        /* set by infer() */
	int64_t shape[GANGLION_RT_MAX_DIMS]; /* set by infer() (also on GANGLION_RT_ESPACE) */
	float *data;
	size_t capacity; /* float elements that data can hold */
} ganglion_rt_output;

/* The table a plugin returns. Every field is set; the strings and the table are static. */
typedef struct ganglion_runtime {
	uint32_t abi_version;       /* GANGLION_RUNTIME_ABI_VERSION */
	uint32_t struct_size;       /* sizeof(struct ganglion_runtime) as the plugin was built */
	const char *name;           /* short, stable runtime name: "opencv-dnn" */
	const char *version;        /* plugin version and backend version: "0.1.0 (OpenCV 4.6.0)" */
	const char *const *formats; /* model formats it loads, NULL-terminated: {"onnx", NULL} */

	/* Initializes the plugin. The agent calls it exactly once, after dlopen and before any
	 * other function, from one thread while no other thread calls into the plugin (the plugin may
	 * set environment variables here). options is NULL or a NULL-terminated array of "key=value"
	 * strings, borrowed for the call; an unknown key or bad value is GANGLION_RT_EINVAL. */
	int (*init)(const char *const *options, char *err, size_t errlen);

	/* Fills out with the targets usable on this machine now (probing devices as needed).
	 * Thread-safe; may be slow (device probing) the first time. */
	int (*capabilities)(ganglion_rt_caps *out, char *err, size_t errlen);

	/* Loads the model in the file at path to run on target (a name from capabilities(), e.g.
	 * "cpu" or "opencl") and sets *out to a new handle, released with free_model(). The plugin
	 * reads the file during the call and does not keep it open, so it may be replaced afterwards.
	 * The agent (revision 2) calls load_buffer() instead; load() stays for other hosts and tools.
	 *
	 * Before it returns the plugin warms the model up (one inference on a zero input), so that
	 * kernel compilation and allocation happen here and not in the first infer(), and so that it
	 * knows where the model really runs. If the requested target cannot be used (no device, the
	 * backend fell back) the plugin may still load the model elsewhere; describe() then reports the
	 * target actually used and the reason. A plugin never reports a target that did not run the
	 * warm-up. A target name the plugin does not know at all is GANGLION_RT_EUNSUPPORTED.
	 *
	 * Thread-safe: may run concurrently with infer() on other models (hot swap loads the new
	 * model while the old one serves). *out is left NULL on failure. */
	int (*load)(ganglion_rt_model **out, const char *path, const char *target, char *err, size_t errlen);

	/* Returns the model's interface and target (borrowed, valid until free_model()). Never
	 * fails for a handle from load(). Thread-safe. */
	const ganglion_rt_model_info *(*describe)(const ganglion_rt_model *model);

	/* Runs the model once. inputs must name every input of the model once; outputs names the
	 * outputs wanted (one or more, each at most once). Shapes must match describe()'s, where
	 * dynamic dimensions (-1) match any size. On GANGLION_RT_ESPACE the output's shape is set to
	 * what is needed and nothing else is meaningful; the caller may retry with a bigger buffer.
	 *
	 * Thread-safe on the same model: several threads may call infer() on one model at once, and
	 * should then run in parallel. A plugin whose backend is not re-entrant keeps one backend
	 * instance per concurrent call (a small pool), or at least serializes (a lock per model). A
	 * failed infer() leaves the model usable. */
	int (*infer)(ganglion_rt_model *model, const ganglion_rt_input *inputs, size_t n_inputs,
		     ganglion_rt_output *outputs, size_t n_outputs, char *err, size_t errlen);

	/* Releases a model (NULL is fine). The caller guarantees that no other call on this model is
	 * in flight or will follow (the agent frees a model when its last reference goes). */
	void (*free_model)(ganglion_rt_model *model);

	/* Revision 2. Does what load() does, from the len bytes at data instead of a file: the agent
	 * passes the very bytes it has checked against their signed length and hashes. data is
	 * borrowed for the call only: the plugin copies whatever it keeps and never writes to it.
	 * name says what the bytes are in messages (the agent passes "models/SHA256"); it is not a
	 * path and is never opened. Same return codes as load(), except that there is no file to
	 * miss: GANGLION_RT_ENOTFOUND is not returned. Thread-safe like load(). */
	int (*load_buffer)(ganglion_rt_model **out, const void *data, size_t len, const char *name, const char *target,
			   char *err, size_t errlen);

	/* Revision 3, optional (may be NULL). The highest opset of the default ONNX domain ("" or
	 * "ai.onnx") that this plugin's backend runs, as its backend declares or enforces it: models
	 * stamped with a higher opset are ones it refuses or does not know. 0 when the plugin cannot
	 * tell. The agent reports it among the device's facts, and the server refuses a release whose
	 * requirements.opset is higher. Called after init(); thread-safe; may be slow the first time
	 * (a backend may have to be asked by trying), fast afterwards. */
	int (*onnx_opset)(void);
} ganglion_runtime;

/* The entry point's type: returns the plugin's table (static, never NULL). Calling it has no
 * side effects and may be done several times. */
typedef const ganglion_runtime *(*ganglion_runtime_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
