#!/usr/bin/python3
"""Generates the small ONNX test models and their release metadata (with a sample input and the
numpy-computed expected output) into the directory given as argv[1].

Run with /usr/bin/python3: it needs Debian's python3-onnx and python3-numpy. Deterministic: fixed
seeds, fixed opset (11) and IR version (6), which OpenCV 4.6's ONNX importer handles.

  v1.onnx    y = relu(x @ W1 + b1), x[1,4] -> y[1,3]
  v2.onnx    same graph and IO, other weights
  bad.onnx   a valid model whose metadata sample claims v1's output: the self-test must fail
  wide.onnx  x[1,5] -> y[1,3]: an interface change (its own sample passes, v1's inputs fail)
  dyn.onnx   x[N,4] -> y[N,1], the sum of each row: a dynamic batch dimension
  conv.onnx  x[1,3,32,32] -> conv3x3(16) -> relu -> conv3x3(16) -> relu -> global avg pool
             -> flatten -> gemm -> y[1,4]; enough work for the OpenCL path to run real kernels

Third-party models, with an optional second argument: the data directory of Debian's
libonnx-testdata (/usr/share/libonnx-testdata/data). Each case of THIRD_PARTY (PyTorch-converted
layers and ONNX node tests that no one here wrote) is copied to OUTDIR/thirdparty/CASE.onnx with
CASE.json holding its interface and its reference input and output (the test's .pb tensors) as the
sample; OUTDIR/thirdparty.json lists the cases.
"""
import glob
import json
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 11
IR_VERSION = 6


def make_model(name, nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="ganglion-tests",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def dense_model(name, w, b):
    inits = [numpy_helper.from_array(w, "W1"), numpy_helper.from_array(b, "b1")]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["xw"], name="matmul"),
        helper.make_node("Add", ["xw", "b1"], ["xwb"], name="add"),
        helper.make_node("Relu", ["xwb"], ["y"], name="relu"),
    ]
    return make_model(name, nodes,
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w.shape[0]])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)


def dense_ref(x, w, b):
    return np.maximum(x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64), 0.0)


def conv2d(x, w, b):
    """NCHW convolution, stride 1, padding 1, in float64."""
    n, c, h, wd = x.shape
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + h, j:j + wd]  # n, c, h, w
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def conv_model(rng):
    w1 = rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    b1 = rng.normal(0, 0.1, (16,)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (16, 16, 3, 3)).astype(np.float32)
    b2 = rng.normal(0, 0.1, (16,)).astype(np.float32)
    wf = rng.normal(0, 0.5, (4, 16)).astype(np.float32)
    bf = rng.normal(0, 0.1, (4,)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "c1_w"), (b1, "c1_b"), (w2, "c2_w"), (b2, "c2_b"), (wf, "fc_w"), (bf, "fc_b")]]
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
    nodes = [
        helper.make_node("Conv", ["x", "c1_w", "c1_b"], ["c1"], name="conv1", **conv),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "c2_w", "c2_b"], ["c2"], name="conv2", **conv),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    model = make_model("conv", nodes,
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits)

    def ref(x):
        r1 = np.maximum(conv2d(x.astype(np.float64), w1.astype(np.float64), b1), 0)
        r2 = np.maximum(conv2d(r1, w2.astype(np.float64), b2), 0)
        return r2.mean(axis=(2, 3)) @ wf.astype(np.float64).T + bf

    return model, ref


def spec(name, shape):
    return {"name": name, "dtype": "float32", "shape": list(shape)}


def rounded(a):
    # float32 values, printed with enough digits to round-trip
    return [float(np.float32(v)) for v in np.asarray(a, dtype=np.float32).ravel()]


def write(outdir, name, version, model, x, y, tolerance, in_shape, out_shape):
    fname = name + ".onnx"
    path = os.path.join(outdir, fname)
    onnx.save(model, path)
    meta = {
        "version": version,
        "format": "onnx",
        "filename": fname,
        "inputs": [spec("x", in_shape)],
        "outputs": [spec("y", out_shape)],
        "sample": {"inputs": {"x": rounded(x)}, "outputs": {"y": rounded(y)}, "tolerance": tolerance},
    }
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump(meta, f, sort_keys=True)
        f.write("\n")


# Cases of libonnx-testdata: the common layers of vision models, and two that OpenCV 4.6 refuses
# or cannot feed: a Gemm whose B is an input (not a constant), and an Embedding with int64 input.
THIRD_PARTY = [
    "pytorch-converted/" + c for c in (
        "test_Conv1d", "test_Conv2d", "test_Conv2d_depthwise_strided", "test_Conv2d_dilated", "test_Conv2d_groups",
        "test_Conv2d_no_bias", "test_Conv2d_padding", "test_Conv3d", "test_ConvTranspose2d", "test_BatchNorm2d_eval",
        "test_AvgPool2d", "test_MaxPool2d", "test_MaxPool3d", "test_Linear", "test_Linear_no_bias", "test_Softmax",
        "test_LogSoftmax", "test_PReLU_2d", "test_PixelShuffle", "test_ReflectionPad2d", "test_ELU", "test_SELU",
        "test_Sigmoid", "test_Tanh", "test_GLU", "test_Embedding")
] + ["node/test_gemm_default_no_bias"]


def read_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def dtype_name(a):
    return {"float32": "float32", "int64": "int64"}.get(a.dtype.name, a.dtype.name)


def third_party(outdir, datadir):
    """Copies the THIRD_PARTY cases with their reference tensors as samples."""
    tpdir = os.path.join(outdir, "thirdparty")
    os.makedirs(tpdir, exist_ok=True)
    names = []
    for case in THIRD_PARTY:
        src = os.path.join(datadir, case)
        name = os.path.basename(case)
        model = onnx.load(os.path.join(src, "model.onnx"))
        inits = {i.name for i in model.graph.initializer}
        in_names = [i.name for i in model.graph.input if i.name not in inits]
        out_names = [o.name for o in model.graph.output]
        ins = [read_pb(p) for p in sorted(glob.glob(os.path.join(src, "test_data_set_0", "input_*.pb")))]
        outs = [read_pb(p) for p in sorted(glob.glob(os.path.join(src, "test_data_set_0", "output_*.pb")))]
        assert len(ins) == len(in_names) and len(outs) == len(out_names), case
        shutil.copyfile(os.path.join(src, "model.onnx"), os.path.join(tpdir, name + ".onnx"))
        # PyTorch computed the references: float32 kernels agree to about 1e-5 relative
        scale = max(1.0, max(float(np.max(np.abs(o))) for o in outs))
        meta = {
            "version": "1.0.0",
            "format": "onnx",
            "filename": name + ".onnx",
            "inputs": [{"name": n, "dtype": dtype_name(a), "shape": list(a.shape)} for n, a in zip(in_names, ins)],
            "outputs": [{"name": n, "dtype": dtype_name(a), "shape": list(a.shape)} for n, a in zip(out_names, outs)],
            "sample": {"inputs": {n: [float(v) for v in a.ravel()] for n, a in zip(in_names, ins)},
                       "outputs": {n: rounded(a) for n, a in zip(out_names, outs)},
                       "tolerance": 1e-4 * scale},
        }
        with open(os.path.join(tpdir, name + ".json"), "w") as f:
            json.dump(meta, f, sort_keys=True)
            f.write("\n")
        names.append(name)
    with open(os.path.join(outdir, "thirdparty.json"), "w") as f:
        json.dump(names, f)
        f.write("\n")


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: make_models.py OUTDIR [LIBONNX_TESTDATA_DIR]")
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    if len(sys.argv) == 3:
        if not os.path.isdir(sys.argv[2]):
            sys.exit(f"make_models.py: {sys.argv[2]} missing: install Debian's libonnx-testdata")
        third_party(outdir, sys.argv[2])

    rng = np.random.default_rng(20240611)
    x = np.array([[0.5, -1.25, 2.0, 0.75]], dtype=np.float32)

    w1 = rng.normal(0, 1, (4, 3)).astype(np.float32)
    # choose b1 so that the sample's pre-activations are [1.5, 0.7, -0.4]: relu keeps two, zeroes one
    b1 = (np.array([1.5, 0.7, -0.4]) - x.astype(np.float64) @ w1).ravel().astype(np.float32)
    y1 = dense_ref(x, w1, b1)
    write(outdir, "v1", "1.0.0", dense_model("v1", w1, b1), x, y1, 1e-4, [1, 4], [1, 3])

    w2 = rng.normal(0, 1, (4, 3)).astype(np.float32)
    b2 = (np.abs(rng.normal(0, 0.5, (3,))) + 3.0).astype(np.float32)
    y2 = dense_ref(x, w2, b2)
    write(outdir, "v2", "2.0.0", dense_model("v2", w2, b2), x, y2, 1e-4, [1, 4], [1, 3])

    # bad: different weights, but the sample claims v1's output
    wb = (w1 + 1.0).astype(np.float32)
    bb = (b1 + 1.0).astype(np.float32)
    assert np.max(np.abs(dense_ref(x, wb, bb) - y1)) > 0.5
    write(outdir, "bad", "3.0.0", dense_model("bad", wb, bb), x, y1, 1e-4, [1, 4], [1, 3])

    model, ref = conv_model(rng)
    xc = rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    write(outdir, "conv", "1.0.0", model, xc, ref(xc), 1e-3, [1, 3, 32, 32], [1, 4])

    # dyn: a dynamic batch (N), y = the sum of each row of x
    nodes = [helper.make_node("ReduceSum", ["x"], ["y"], name="sum", axes=[1], keepdims=1)]
    model = make_model("dyn", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])], [])
    write(outdir, "dyn", "1.0.0", model, x, x.astype(np.float64).sum(axis=1, keepdims=True), 1e-4, [-1, 4], [-1, 1])

    # wide: a release whose interface changed (x[1,5]); its own sample passes, but the apps that
    # send v1's four values get errors, which a rollout's error-rate gate must catch
    xw = np.array([[0.5, -1.25, 2.0, 0.75, 1.0]], dtype=np.float32)
    ww = rng.normal(0, 1, (5, 3)).astype(np.float32)
    bw = (np.abs(rng.normal(0, 0.5, (3,))) + 1.0).astype(np.float32)
    write(outdir, "wide", "3.1.0", dense_model("wide", ww, bw), xw, dense_ref(xw, ww, bw), 1e-4, [1, 5], [1, 3])


if __name__ == "__main__":
    main()
