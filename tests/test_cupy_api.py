"""The array code uses only what CuPy has, shown on a machine where CuPy cannot be installed.

CuPy's public names are vendored below (read out of the wheels' ``__init__.py`` files, never
installed; regenerate with ``python tests/test_cupy_api.py WHEEL...`` after ``pip download
--no-deps cupy-cuda12x==VERSION``): the names common to the oldest and newest CuPy the ``gpu``
extra allows. Two checks against them:

- statically, every ``xp.<name>``, ``np.<name>`` and ``cupy.<name>`` (and ``xp.random.<name>``,
  ``xp.add.at`` and the like) in the code that runs on device arrays;
- dynamically, the engine trained and run under a ``cupy`` backend whose ``xp`` is NumPy
  restricted to those names (anything else raises, naming it), against the NumPy backend.

And CuPy is imported only where it is required: nowhere at module level but kernels/cuda.py.
"""

import ast
import subprocess
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "minicnn"
MATHS = PKG / "maths" if (PKG / "maths").is_dir() else PKG / "ops"  # ops/ is being renamed
ARRAY_CODE = [MATHS, PKG / "layers", PKG / "losses", PKG / "optimizers", PKG / "activations", PKG / "metrics", PKG / "initializers.py", PKG / "models", PKG / "plan", PKG / "training", PKG / "backend.py", ROOT / "kernels" / "cuda.py"]  # fmt: skip
SUBMODULES = ("random", "linalg")
UFUNC_METHODS = ("at", "reduce", "accumulate", "outer", "reduceat")  # cupy/_core/_kernel.pyx

# -- generated: CuPy's public names ---------------------------------------------------------------
CUPY_VERSIONS = ("13.0.0", "14.2.0")  # the names common to these
CUPY_NAMES = {
    "cupy": """
AxisError ComplexWarning DataSource ElementwiseKernel Inf Infinity ModuleDeprecationWarning NAN
NINF NZERO NaN PINF PZERO RankWarning RawKernel RawModule ReductionKernel TooHardError
VisibleDeprecationWarning abs absolute add all allclose alltrue amax amin angle any append
apply_along_axis arange arccos arccosh arcsin arcsinh arctan arctan2 arctanh argmax argmin
argpartition argsort argwhere around array array2string array_equal array_equiv array_repr
array_split array_str asanyarray asarray asarray_chkfinite ascontiguousarray asfarray
asfortranarray asnumpy atleast_1d atleast_2d atleast_3d average bartlett base_repr binary_repr
bincount bitwise_and bitwise_not bitwise_or bitwise_xor blackman bool_ broadcast
broadcast_arrays broadcast_shapes broadcast_to byte byte_bounds c_ can_cast cbrt cdouble ceil
cfloat choose clear_memo clip column_stack common_type complex128 complex64 complex_
complexfloating compress concatenate conj conjugate convolve copy copysign copyto corrcoef
correlate cos cosh count_nonzero cov cross csingle cuda cumprod cumproduct cumsum deg2rad
degrees delete diag diag_indices diag_indices_from diagflat diagonal diff digitize
disable_experimental_feature_warning disp divide divmod dot double dsplit dstack dtype e ediff1d
einsum empty empty_like equal euler_gamma exp exp2 expand_dims expm1 extract eye fabs fft
fill_diagonal find_common_type finfo fix flatiter flatnonzero flip fliplr flipud float16 float32
float64 float_ float_power floating floor floor_divide fmax fmin fmod format_float_positional
format_float_scientific format_parser frexp fromDlpack from_dlpack frombuffer fromfile
fromfunction fromiter fromstring full full_like fuse gcd generic genfromtxt get_array_module
get_array_wrap get_default_memory_pool get_default_pinned_memory_pool get_printoptions gradient
greater greater_equal half hamming hanning heaviside histogram histogram2d histogramdd hsplit
hstack hypot i0 identity iinfo imag in1d index_exp indices inexact inf infty inner int16 int32
int64 int8 int_ intc integer interp intersect1d intp invert is_available isclose iscomplex
iscomplexobj isfinite isfortran isin isinf isnan isneginf isposinf isreal isrealobj isscalar
issctype issubclass_ issubdtype issubsctype iterable ix_ kaiser kron lcm ldexp left_shift less
less_equal lexsort linalg linspace load loadtxt log log10 log1p log2 logaddexp logaddexp2
logical_and logical_not logical_or logical_xor logspace longlong mask_indices matmul max maximum
may_share_memory mean median memoize meshgrid mgrid min min_scalar_type minimum mintypecode mod
modf moveaxis msort multiply nan nan_to_num nanargmax nanargmin nancumprod nancumsum nanmax
nanmean nanmedian nanmin nanprod nanstd nansum nanvar ndarray ndim ndindex negative newaxis
nextafter nonzero not_equal number obj2sctype ogrid ones ones_like outer packbits pad partition
percentile pi piecewise place poly poly1d polyadd polyfit polymul polynomial polysub polyval
positive power printoptions prod product promote_types ptp put putmask quantile r_ rad2deg
radians random ravel ravel_multi_index real real_if_close reciprocal remainder repeat require
reshape resize result_type right_shift rint roll rollaxis roots rot90 round round_ row_stack s_
safe_eval save savetxt savez savez_compressed sctype2char searchsorted select set_printoptions
set_string_function setdiff1d setxor1d shape shares_memory short show_config sign signbit
signedinteger sin sinc single singlecomplex sinh size sometrue sort sort_complex split sqrt
square squeeze stack std subtract sum swapaxes take take_along_axis tan tanh tensordot testing
tile trace transpose trapz tri tril tril_indices tril_indices_from trim_zeros triu triu_indices
triu_indices_from true_divide trunc typename ubyte ufunc uint uint16 uint32 uint64 uint8 uintc
uintp ulonglong union1d unique unpackbits unravel_index unsignedinteger unwrap ushort vander var
vdot vectorize vsplit vstack where who zeros zeros_like
""".split(),
    "cupy.random": """
BitGenerator Generator MRG32k3a Philox4x3210 RandomState XORWOW beta binomial bytes chisquare
choice default_rng dirichlet exponential f gamma geometric get_random_state gumbel
hypergeometric laplace logistic lognormal logseries multinomial multivariate_normal
negative_binomial noncentral_chisquare noncentral_f normal pareto permutation poisson power rand
randint randn random random_integers random_sample ranf rayleigh reset_states sample seed
set_random_state shuffle standard_cauchy standard_exponential standard_gamma standard_normal
standard_t triangular uniform vonmises wald weibull zipf
""".split(),
    "cupy.linalg": """
LinAlgError cholesky det eigh eigvalsh inv lstsq matrix_power matrix_rank norm pinv qr slogdet
solve svd tensorinv tensorsolve
""".split(),
    "cupyx": """
DeviceSynchronized GeneralizedUFunc allow_synchronize empty_like_pinned empty_pinned errstate
get_runtime_info geterr lapack linalg optimizing rsqrt scatter_add scatter_max scatter_min scipy
seterr time zeros_like_pinned zeros_pinned
""".split(),
}
# -- end of generated names -----------------------------------------------------------------------

WHEEL_FILES = {
    "cupy": "cupy/__init__.py",
    "cupy.random": "cupy/random/__init__.py",
    "cupy.linalg": "cupy/linalg/__init__.py",
    "cupyx": "cupyx/__init__.py",
}


def public_names(source: str) -> set[str]:
    """Names a module binds at its top level, in every branch of its ifs and trys, and the
    names its module ``__getattr__`` answers for (CuPy's lazy ``Generator``)."""
    names = set()

    def visit(body):
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")  # fmt: skip
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
                if node.name == "__getattr__":
                    names.update(n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.isidentifier())  # fmt: skip
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + [c for h in getattr(node, "handlers", []) for c in h.body])  # fmt: skip

    visit(ast.parse(source).body)
    return {n for n in names if not n.startswith("_") and n != "annotations"}


def names_in(wheel: Path) -> dict[str, set[str]]:
    """{module: public names} of a CuPy wheel, read as a zip."""
    with zipfile.ZipFile(wheel) as z:
        return {module: public_names(z.read(member).decode()) for module, member in WHEEL_FILES.items()}  # fmt: skip


def regenerate(wheels: list[str]) -> None:
    """Rewrite the generated block of this file from the names every wheel has."""
    found = [names_in(Path(w)) for w in wheels]
    versions = sorted({Path(w).name.split("-")[1] for w in wheels})
    quoted = ", ".join(f'"{v}"' for v in versions)
    lines = [f"CUPY_VERSIONS = ({quoted})  # the names common to these", "CUPY_NAMES = {"]
    for module in WHEEL_FILES:
        common = sorted(set.intersection(*(f[module] for f in found)))
        lines += [f'    "{module}": """', textwrap.fill(" ".join(common), 96), '""".split(),']
    lines.append("}")
    me = Path(__file__)
    text = me.read_text()
    head, rest = text.split("# -- generated: CuPy's public names", 1)
    block, tail = rest.split("# -- end of generated names", 1)
    block = block.split("\n", 1)[0] + "\n" + "\n".join(lines) + "\n"
    me.write_text(head + "# -- generated: CuPy's public names" + block + "# -- end of generated names" + tail)  # fmt: skip
    print(f"{me}: names of CuPy {', '.join(versions)}")


CUPY = {module: set(names) for module, names in CUPY_NAMES.items()}


# -- statically: every name the array code asks of xp, np or cupy ---------------------------------


def _source_files():
    for place in ARRAY_CODE:
        yield from sorted(place.rglob("*.py")) if place.is_dir() else [place]


def _base(node) -> bool:
    """Whether ``node`` stands for an array module: xp, np, numpy, cupy, anything.xp, or
    get_array_module(...)."""
    if isinstance(node, ast.Name):
        return node.id in ("xp", "np", "numpy", "cupy")
    if isinstance(node, ast.Attribute):
        return node.attr == "xp"
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "get_array_module"


def array_module_names():
    """{(file, line, column): (name, the attribute after it or None)} for each attribute asked
    of an array module (``xp.random.default_rng`` gives ("random", "default_rng"))."""
    found = {}
    for path in _source_files():
        tree = ast.parse(path.read_text())
        after = {id(n.value): n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _base(node.value)):
                continue
            if node.attr.startswith("__") or node.attr == "xp":  # a Backend's own xp
                continue
            where = (path.relative_to(ROOT).as_posix(), node.lineno, node.col_offset)
            found[where] = (node.attr, after.get(id(node)))
    return found


def missing_in_cupy(name: str, then: str | None) -> str | None:
    """Why ``xp.name`` (followed by ``.then``, if any) would fail on CuPy, or None."""
    if name not in CUPY["cupy"]:
        return f"cupy.{name}"
    if name in SUBMODULES and then is not None and then not in CUPY[f"cupy.{name}"]:
        return f"cupy.{name}.{then}"
    if then in UFUNC_METHODS and not isinstance(getattr(np, name, None), np.ufunc):
        return f"cupy.{name}.{then}"
    return None


def test_the_array_code_asks_only_for_names_cupy_has():
    found = array_module_names()
    assert len(found) > 200 and any(f.startswith(MATHS.relative_to(ROOT).as_posix()) for f, *_ in found)  # fmt: skip
    wrong = {}
    for (path, line, _), (name, then) in found.items():
        reason = missing_in_cupy(name, then)
        if reason:
            wrong.setdefault(reason, []).append(f"{path}:{line}")
    assert not wrong, f"not in CuPy {CUPY_VERSIONS}: {wrong}"


def test_the_check_knows_what_cupy_lacks():
    """It can fail: names NumPy has and CuPy does not are refused, CuPy's own are let through."""
    for name, then in [("nanargmax", None), ("random", "Generator"), ("add", "at"), ("linalg", "norm")]:  # fmt: skip
        assert missing_in_cupy(name, then) is None, name
    refused = [("errstate", None), ("nditer", None), ("concat", None), ("astype", None), ("random", "PCG64"), ("linalg", "multi_dot"), ("pi", "at")]  # fmt: skip
    for name, then in refused:
        assert missing_in_cupy(name, then) is not None, name


# -- dynamically: the engine run with an xp that has only CuPy's names ----------------------------


class StrictXp(types.ModuleType):
    """``module`` restricted to ``names``: any other raises AttributeError naming it."""

    def __init__(self, name: str, module, names: set, **own):
        super().__init__(name)
        self._module, self._names = module, names
        self.__dict__.update(own)

    def __getattr__(self, name):
        if name.startswith("__") or name not in self._names:
            raise AttributeError(f"{self.__name__}.{name} is not in CuPy {CUPY_VERSIONS}")
        return getattr(self._module, name)


@pytest.fixture
def strict_cupy(monkeypatch):
    """Install a "cupy" backend whose xp is NumPy with CuPy's names only (and cupyx's
    scatter_add): from then on every array counts as a CuPy array, so the engine takes its GPU
    branches (im2col for convolutions, array code for the ops the CUDA kernels serve)."""
    from minicnn import backend

    stream = types.SimpleNamespace(synchronize=lambda: None)
    strict = StrictXp(
        "cupy", np, CUPY["cupy"],
        random=StrictXp("cupy.random", np.random, CUPY["cupy.random"]),
        linalg=StrictXp("cupy.linalg", np.linalg, CUPY["cupy.linalg"]),
        asnumpy=np.asarray,
        cuda=types.SimpleNamespace(get_current_stream=lambda: stream, get_device_id=lambda: 0),
    )  # fmt: skip
    cupyx = StrictXp("cupyx", types.SimpleNamespace(scatter_add=np.add.at), CUPY["cupyx"])

    def install():
        monkeypatch.setenv("MINICNN_KERNELS", "numpy")  # no kernel: lookup would try CUDA's
        monkeypatch.setitem(backend._cache, "cupy", backend.Backend("cupy", strict))
        monkeypatch.setitem(sys.modules, "cupyx", cupyx)
        return strict

    return install


def _every_layer(name):
    import minicnn
    from minicnn import layers as L  # noqa: N812

    minicnn.utils.set_random_seed(4)
    model = minicnn.Sequential([L.Input(shape=(12, 12, 1)), L.Rescaling(0.5),
        L.RandomRotation(0.1), L.RandomZoom(0.1, fill_mode="constant"), L.RandomTranslation(0.1, 0.1),
        L.Conv2D(8, 3, activation="relu", padding="same"), L.BatchNormalization(), L.MaxPooling2D(),
        L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(),
        L.Conv2D(16, 3, strides=2, padding="same"), L.AveragePooling2D(1), L.Activation("tanh"),
        L.GlobalAveragePooling2D(), L.Reshape((16,)), L.Dense(10, activation="softmax")], backend=name)  # fmt: skip
    model.compile(minicnn.optimizers.Adam(1e-3, use_ema=True), "categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    return model


def test_training_and_inference_on_cupys_names(strict_cupy, float64, rng):
    """Every layer kind, BatchNorm with its fused ReLU and its inference fold, augmentation,
    Adam with EMA: fit, predict and evaluate on the strict backend give the NumPy backend's
    numbers."""
    from minicnn.utils import to_categorical

    x, y = rng.random((24, 12, 12, 1)), to_categorical(rng.integers(0, 10, 24), 10)
    results = []
    for name in ("numpy", "cupy"):
        if name == "cupy":
            strict = strict_cupy()
        model = _every_layer(name)
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        results.append((model.get_weights(), model.predict(x, verbose=0), history.history["loss"]))
    from minicnn import backend

    assert backend.get_array_module(x) is strict
    (w_np, p_np, l_np), (w_cp, p_cp, l_cp) = results
    for a, b in zip(w_np, w_cp):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(p_cp, p_np, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(l_cp, l_np, rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["im2col", "shifted", "winograd", "direct", "space_to_depth", "taps"])  # fmt: skip
def test_every_convolution_algorithm_on_cupys_names(strict_cupy, float64, rng, monkeypatch, algorithm):  # fmt: skip
    """What MINICNN_CONV can force on the GPU, forward and backward, against NumPy's im2col."""
    from minicnn import maths

    x, kernel = rng.standard_normal((2, 9, 9, 8)), rng.standard_normal((3, 3, 8, 4))
    strides = (2, 2) if algorithm == "space_to_depth" else (1, 1)
    if algorithm == "space_to_depth":
        kernel = rng.standard_normal((5, 5, 8, 4))
    pads = maths.padding_amounts(9, 9, *kernel.shape[:2], *strides, "same")

    def run(name):  # -> (the ctx's type, [z, then each gradient])
        z, ctx = maths.conv2d_forward(x, kernel, None, strides, pads, algorithm=name)
        grads = maths.conv2d_backward(np.cos(z), ctx)
        return type(ctx), [z, *(g for g in grads if g is not None)]

    want = run("im2col")
    strict_cupy()
    got = run(algorithm)
    assert got[0] is maths.conv.ALGORITHMS[algorithm].Ctx
    assert len(got[1]) == len(want[1]) == 3  # z, gx, gkernel
    for a, b in zip(got[1], want[1]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_dropout_and_the_resampling_gradient_on_cupys_names(strict_cupy, rng):
    """The two ops whose GPU branch differs from the CPU's: Dropout's draw from the device
    generator and the resampling gradient's cupyx.scatter_add."""
    from minicnn import maths

    x, t = rng.standard_normal((3, 7, 6, 2)), np.tile([0.9, 0.2, 0.3, -0.1, 1.1, -0.4], (3, 1))
    want = maths.affine_resample_backward(x, t, "bilinear", "reflect")
    strict_cupy()
    np.testing.assert_allclose(maths.affine_resample_backward(x, t, "bilinear", "reflect"), want, rtol=1e-12)  # fmt: skip
    y, keep = maths.dropout(np.ones((64, 100), np.float32), 0.25)
    assert abs(keep.mean() - 0.75) < 0.03 and set(np.unique(y)) <= {0, np.float32(1 / 0.75)}


def test_a_name_cupy_lacks_is_refused(strict_cupy):
    strict = strict_cupy()
    assert strict.sqrt is np.sqrt and strict.random.default_rng is np.random.default_rng
    for name in ("errstate", "concat"):
        with pytest.raises(AttributeError, match=f"cupy.{name} is not in CuPy"):
            getattr(strict, name)


# -- CuPy imported only where it is required ------------------------------------------------------


def test_only_kernels_cuda_imports_cupy_at_module_level():
    """Everywhere else CuPy is imported inside the function that needs it (the backend that
    loads it, the NCCL reduction, the resampling gradient's scatter_add)."""
    found = []
    for path in sorted([*PKG.rglob("*.py"), *(ROOT / "kernels").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body]
        top += [c for n in tree.body if isinstance(n, (ast.If, ast.Try)) for c in ast.walk(n)]
        for node in top:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []  # fmt: skip
            if any(n.split(".")[0] in ("cupy", "cupyx") for n in names):
                found.append(path.relative_to(ROOT).as_posix())
    assert found == ["kernels/cuda.py"]


def test_a_numpy_run_never_imports_cupy():
    code = (
        "import sys, numpy as np, minicnn\n"
        "from minicnn import layers\n"
        "m = minicnn.Sequential([layers.Input(shape=(6, 6, 1)), layers.Conv2D(2, 3), layers.BatchNormalization(),"
        " layers.Flatten(), layers.Dropout(0.5), layers.Dense(3, activation='softmax')])\n"
        "m.compile('adam', 'sparse_categorical_crossentropy')\n"
        "m.fit(np.random.rand(8, 6, 6, 1), np.arange(8) % 3, verbose=0); m.predict(np.zeros((2, 6, 6, 1)), verbose=0)\n"
        "loaded = [m for m in ('cupy', 'cupyx', 'minicnn.kernels.cuda') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


if __name__ == "__main__":
    regenerate(sys.argv[1:])
