#!/usr/bin/python3
"""Writes the .npy fixtures of tests/unit/lib/test_npy.c with numpy itself (Debian's python3-numpy),
and beside each accepted one NAME.txt: its dtype string, its shape and its values as numpy sees them
(repr of each element as a Python number), so the test's expected values come from numpy.
Run from this directory: /usr/bin/python3 gen.py"""
import numpy as np

ok = {
    "f4_2x3": np.array([[0.5, -1.25, 3.0e-8], [1e30, -0.0, 7.0 / 3.0]], dtype="<f4"),
    "f8_scalar": np.array(np.pi, dtype="<f8"),
    "f8_image": (np.arange(1 * 3 * 4 * 4, dtype="<f8").reshape(1, 3, 4, 4) / 17.0 - 1.0),
    "i8_1d": np.array([0, -1, 2**40, -(2**53), 9], dtype="<i8"),
    "i4_1d": np.array([-2147483648, 2147483647, 0], dtype="<i4"),
    "i2_1d": np.array([-32768, 32767, -2], dtype="<i2"),
    "i1_1d": np.array([-128, 127, -1], dtype="|i1"),
    "u1_img": np.arange(12, dtype="|u1").reshape(2, 2, 3) * 20,
    "u2_1d": np.array([0, 65535], dtype="<u2"),
    "u4_1d": np.array([4294967295, 1], dtype="<u4"),
    "u8_1d": np.array([2**63, 5], dtype="<u8"),
    "b1_1d": np.array([True, False, True]),
    "f4_empty": np.zeros((0, 3), dtype="<f4"),
}
for name, a in ok.items():
    np.save(name + ".npy", a)
# The same array in format versions 2.0 and 3.0.
for v in (2, 3):
    with open("f4_v%d.npy" % v, "wb") as f:
        np.lib.format.write_array(f, ok["f4_2x3"], version=(v, 0))
    ok["f4_v%d" % v] = ok["f4_2x3"]
for name, a in ok.items():
    with open(name + ".txt", "w") as f:
        f.write(a.dtype.str + "\n")
        f.write(" ".join(str(d) for d in a.shape) + "\n")
        f.write(" ".join(repr(float(x)) for x in a.ravel(order="C").tolist()) + "\n")

# What the parser must refuse, as numpy writes it.
bad = {
    "bad_fortran": np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3)),
    "bad_big_endian": np.arange(3, dtype=">f4"),
    "bad_f2": np.arange(3, dtype="<f2"),
    "bad_c8": np.arange(3, dtype="<c8"),
    "bad_unicode": np.array(["ab", "c"]),
    "bad_struct": np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]),
    "bad_object": np.array([1, "x"], dtype=object),
}
for name, a in bad.items():
    np.save(name + ".npy", a, allow_pickle=True)

# .npz: numpy.savez (stored members, each a .npy file byte for byte as numpy.save writes it), and
# numpy.savez_compressed, which the reader refuses.
np.savez("sample.npz", x=ok["f4_2x3"], y=ok["i8_1d"])
np.savez_compressed("bad_compressed.npz", x=ok["f4_2x3"])
