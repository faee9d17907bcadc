"""The ONNX opset a model file declares, as `ganglion models opset` (and `models push`, which puts it
into requirements.opset) reads it with lib/onnx.c: every model of Debian's libonnx-testdata (some
thousand third-party files, opsets 1 to 17, some with a second domain) against the onnx Python
package's reading of the same files. No server."""

import json
import subprocess
from pathlib import Path

import onnx

from ganglion_harness import GANGLION_CLI

TESTDATA = Path("/usr/share/libonnx-testdata/data")


def test_models_opset_reads_what_onnx_reads():
    files = sorted(str(p) for p in TESTDATA.rglob("*.onnx"))
    assert len(files) > 500, "libonnx-testdata is not installed (scripts/deps.sh)"
    got = []
    for i in range(0, len(files), 400):  # a few hundred paths per command line
        p = subprocess.run([GANGLION_CLI, "models", "opset", "-o", "json", *files[i:i + 400]],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        got += json.loads(p.stdout)
    assert [g["file"] for g in got] == files
    want, seen = {}, set()
    for f in files:
        m = onnx.load(f, load_external_data=False)
        versions = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
        want[f] = max(versions) if versions else None
        seen.add(want[f])
    wrong = [(g["file"], g["opset"], want[g["file"]]) for g in got if g["opset"] != want[g["file"]]]
    assert not wrong, f"{len(wrong)} of {len(files)} differ (file, ours, onnx's): {wrong[:5]}"
    assert {1, 6, 13, 17} <= seen and None in seen, seen  # the files cover old, new and undeclared


def test_models_opset_refuses_what_is_not_onnx(tmp_path):
    """A truncated model and a text file are refused with the file named (exit 2), after the files
    before them were printed."""
    good = next(TESTDATA.rglob("test_abs/model.onnx"))
    cut = tmp_path / "cut.onnx"
    data = good.read_bytes()
    cut.write_bytes(data[:len(data) - 3])
    for bad, why in ((cut, "past the end"), (Path("/etc/os-release"), "not an ONNX model")):
        p = subprocess.run([GANGLION_CLI, "models", "opset", good, bad], capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and f"{bad}: " in p.stderr and why in p.stderr, (p.returncode, p.stderr)
        assert p.stdout == f"13\t{good}\n", p.stdout
