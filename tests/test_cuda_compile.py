"""The CUDA module compiles, proved without a GPU or a driver: NVRTC's own library from PyPI
(``nvidia-cuda-nvrtc-cu12`` for CUDA 12, ``nvidia-cuda-nvrtc`` for CUDA 13; the test extra
installs both), loaded through ctypes, compiles every name expression kernels/cuda.py asks for
(each kernel in float and double, int and long long indices) with cuda.py's options, to PTX for
the oldest architecture the library supports and for compute_90, and to an H100/H200 binary
(sm_90, as CuPy compiles by default). And the tables agree with the sources: every kernel the
``.cu`` files define is in ``cuda_sources.KERNELS`` and the other way round, cuda.py launches
only those, and its op table serves ops the engine asks for, with the signatures it calls.

No library found fails (it is in the test extra): these tests must run in CI, not skip."""

import ast
import ctypes
import hashlib
import importlib.util
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from minicnn.kernels import OP_NAMES, cpu, cuda_sources

from minicnn import maths

KERNELS_DIR = Path(cuda_sources.__file__).parent
CUDA_PY = KERNELS_DIR / "cuda.py"
ENTRY_ARCHS = ("compute_90", "sm_90")  # H100/H200: PTX as the issue asks, SASS as CuPy builds


def nvrtc_libraries() -> list[Path]:
    """libnvrtc.so.<major> from the nvidia-* wheels (nvidia/cuda_nvrtc/lib for CUDA 12,
    nvidia/cu13/lib for CUDA 13), newest CUDA first."""
    try:
        import nvidia
    except ImportError:
        return []
    found = {p for base in nvidia.__path__ for p in Path(base).glob("*/lib/libnvrtc.so.*")}
    return sorted(found, key=lambda p: int(p.name.rsplit(".", 1)[1]), reverse=True)


class CompileError(RuntimeError):
    pass


class NVRTC:
    """The few NVRTC calls CuPy's RawModule makes, through ctypes."""

    def __init__(self, path: Path):
        self.lib = lib = ctypes.CDLL(str(path))
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        major, minor = ctypes.c_int(), ctypes.c_int()
        self._ok(lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
        self.version = f"{major.value}.{minor.value}"
        count = ctypes.c_int()
        self._ok(lib.nvrtcGetNumSupportedArchs(ctypes.byref(count)))
        archs = (ctypes.c_int * count.value)()
        self._ok(lib.nvrtcGetSupportedArchs(archs))
        self.archs = sorted(archs)

    def _ok(self, status: int) -> None:
        if status != 0:
            raise CompileError(self.lib.nvrtcGetErrorString(status).decode())

    def compile(self, code: str, name: str, expressions: list[str], options: tuple):
        """-> ({expression: lowered name}, PTX or cubin bytes); CompileError with NVRTC's log."""
        lib, prog = self.lib, ctypes.c_void_p()
        self._ok(lib.nvrtcCreateProgram(ctypes.byref(prog), code.encode(), name.encode(), 0, None, None))  # fmt: skip
        try:
            for e in expressions:
                self._ok(lib.nvrtcAddNameExpression(prog, e.encode()))
            opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
            status = lib.nvrtcCompileProgram(prog, len(options), opts)
            size = ctypes.c_size_t()
            self._ok(lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)))
            log = ctypes.create_string_buffer(size.value)
            self._ok(lib.nvrtcGetProgramLog(prog, log))
            if status != 0:
                raise CompileError(log.value.decode(errors="replace"))
            lowered = {}
            for e in expressions:
                out = ctypes.c_char_p()
                self._ok(lib.nvrtcGetLoweredName(prog, e.encode(), ctypes.byref(out)))
                lowered[e] = out.value.decode()
            kind = "CUBIN" if any(o.startswith("-arch=sm_") for o in options) else "PTX"
            self._ok(getattr(lib, f"nvrtcGet{kind}Size")(prog, ctypes.byref(size)))
            binary = ctypes.create_string_buffer(size.value)
            self._ok(getattr(lib, f"nvrtcGet{kind}")(prog, binary))
            return lowered, binary.raw
        finally:
            lib.nvrtcDestroyProgram(ctypes.byref(prog))


def compile_file(nvrtc: NVRTC, file: str, arch: str, code=None, expressions=None):
    """Compile ``file`` as cuda.py does; a failure names every expression it could not find."""
    code = cuda_sources.source(file) if code is None else code
    expressions = cuda_sources.name_expressions(file) if expressions is None else expressions
    options = (*cuda_sources.OPTIONS, "-ftz=true", f"-arch={arch}")  # CuPy adds the last two
    try:
        return nvrtc.compile(code, file, expressions, options)
    except CompileError as e:
        undefined = set(re.findall(r'identifier "(\w+)" is undefined', str(e)))
        missing = sorted(x for x in expressions if x.split("<")[0] in undefined)
        pytest.fail(f"NVRTC {nvrtc.version} ({arch}) cannot compile {file}: missing {missing}\n{e}")


LIBRARIES = nvrtc_libraries()


@pytest.fixture(scope="module", params=LIBRARIES or [None], ids=lambda p: p.name if p else "none")
def nvrtc(request):
    if request.param is None:
        pytest.fail("no NVRTC library: pip install -e '.[test]' (nvidia-cuda-nvrtc-cu12)")
    return NVRTC(request.param)


def _arch_cases(nvrtc: NVRTC) -> list[str]:
    return [f"compute_{nvrtc.archs[0]}", *ENTRY_ARCHS]


@pytest.mark.parametrize("file", cuda_sources.files())
def test_every_kernel_cuda_py_asks_for_compiles(nvrtc, file):
    """Each file's name expressions (its kernels x float, double x int, long long) compile, and
    each is an entry point of the binary (or named in the PTX) under its lowered name."""
    expressions = cuda_sources.name_expressions(file)
    assert len(expressions) == 4 * sum(f == file for f in cuda_sources.KERNELS.values())
    for arch in _arch_cases(nvrtc):
        lowered, binary = compile_file(nvrtc, file, arch)
        assert set(lowered) == set(expressions)
        for e, mangled in lowered.items():
            assert mangled.encode() in binary, f"{e} ({mangled}) is not in the {arch} output"
        if arch.startswith("compute_"):
            ptx = binary.decode(errors="replace")
            entries = set(re.findall(r"\.entry\s+(\w+)", ptx))
            assert entries == set(lowered.values()), f"{arch}: entries {entries}"


def test_a_missing_kernel_fails_with_its_name(nvrtc):
    """The check can fail: a source without ema_update's definition, and an expression for a
    kernel nobody wrote, are each named."""
    code = cuda_sources.source("minicnn.cu").replace("void ema_update(", "void ema_update_gone(")
    with pytest.raises(pytest.fail.Exception, match=r"missing \[[^]]*'ema_update<float, int>'"):
        compile_file(nvrtc, "minicnn.cu", "compute_90", code=code)
    with pytest.raises(pytest.fail.Exception, match=r"no_such_kernel<double, long long>"):
        compile_file(nvrtc, "minicnn.cu", "compute_90", expressions=["no_such_kernel<double, long long>"])  # fmt: skip


# -- the tables against the sources ---------------------------------------------------------------

_TEMPLATE = re.compile(r"template\s*<\s*typename\s+T\s*,\s*typename\s+I\s*>\s*__global__\s+void\s+(\w+)\s*\(")  # fmt: skip


def defined_kernels() -> dict[str, str]:
    """{kernel: file} for every ``template <typename T, typename I> __global__ void name(``."""
    found = {}
    for path in sorted(KERNELS_DIR.glob("*.cu")):
        text = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)  # no comments
        names = _TEMPLATE.findall(text)
        assert len(names) == text.count("__global__"), f"{path.name}: a kernel not templated on <T, I>"  # fmt: skip
        for name in names:
            assert name not in found, f"{name} is defined in {found[name]} and {path.name}"
            found[name] = path.name
    return found


def test_the_cuda_table_is_what_the_sources_define():
    assert defined_kernels() == cuda_sources.KERNELS
    assert sorted(p.name for p in KERNELS_DIR.glob("*.cu")) == sorted(
        [cuda_sources.COMMON, *cuda_sources.files()]
    )


def _cuda_py():
    return ast.parse(CUDA_PY.read_text())


def test_cuda_py_launches_exactly_the_listed_kernels():
    launched = set()
    for node in ast.walk(_cuda_py()):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "").startswith("_launch"):
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"line {node.lineno}: launch a kernel by its literal name"  # fmt: skip
            launched.add(first.value)
    assert launched - set(cuda_sources.KERNELS) == set(), "launched but not in KERNELS"
    assert set(cuda_sources.KERNELS) - launched == set(), "in KERNELS but never launched"


def _cuda_ops() -> dict[str, ast.FunctionDef]:
    """cuda.py's OPS literal: {op: the function it maps to}, checked for form on the way."""
    tree = _cuda_py()
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    (table,) = [
        n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "OPS"
    ]
    assert isinstance(table, ast.Dict), "cuda.OPS must be a dict literal"
    served = {}
    for key, value in zip(table.keys, table.values):
        op, kind = ast.literal_eval(key)
        assert kind == "any" and isinstance(value, ast.Name), op
        served[op] = functions[value.id]
    return served


def _parameters(fn) -> list[str]:
    if isinstance(fn, ast.FunctionDef):
        return [a.arg for a in fn.args.args]
    return list(inspect.signature(fn).parameters)


def test_each_device_serves_known_ops_with_the_engines_signatures():
    """Every op a table serves is in OP_NAMES (lookup's contract); the CUDA function takes what
    the CPU kernel takes where both serve the op, else what minicnn.maths.<op> takes (a trailing
    tuning argument with a default may follow)."""
    cuda_ops = _cuda_ops()
    cpu_ops = {op: fn for (op, kind), fn in cpu.OPS.items()}
    assert {kind for _, kind in cpu.OPS} == {"any"}
    for table in (cuda_ops, cpu_ops):
        assert set(table) <= set(OP_NAMES), set(table) - set(OP_NAMES)
    for op, fn in cuda_ops.items():
        reference = cpu_ops.get(op) or getattr(maths, op)
        want, got = _parameters(reference), _parameters(fn)
        assert got[: len(want)] == want, f"cuda.{op}{got} against {want}"
        assert len(got) - len(want) <= len(fn.args.defaults), op
    assert {"batchnorm_forward", "batchnorm_backward", "channel_affine", "affine_resample", "affine_resample_backward", "dropout", "dropout_backward", "ema_update"} <= set(cuda_ops)  # fmt: skip


# -- the host stand-in for CuPy -------------------------------------------------------------------

HOST_PRELUDE = r"""
#include <cmath>
#include <cstring>
struct host_dim3 { unsigned int x, y, z; };
static const host_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static const host_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
inline void __syncthreads() {}
using std::exp; using std::floor; using std::fma; using std::fmax; using std::log; using std::sqrt;
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
template <typename T> inline T atomicAdd(T* at, T v) { T old = *at; *at += v; return old; }
"""
C_TYPES = {"float": np.float32, "double": np.float64, "int": np.int32, "long long": np.int64,
           "unsigned int": np.uint32, "signed char": np.int8, "bool": np.bool_}  # fmt: skip
C_SCALARS = {np.float32: ctypes.c_float, np.float64: ctypes.c_double, np.int32: ctypes.c_int,
             np.int64: ctypes.c_longlong, np.uint32: ctypes.c_uint}  # fmt: skip


def kernel_parameters(code: str) -> dict:
    """{kernel: [(C type with T and I unbound, pointer?, name)]} read from the source."""
    code = re.sub(r"//[^\n]*", "", code).replace("\\\n", " ")
    macros = dict(re.findall(r"#define (\w+) ([^\n]*)", code))
    found = {}
    for name, params in re.findall(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)", code):
        params = re.sub(r"\b\w+_ARGS\b", lambda m: macros[m[0]], params)
        found[name] = []
        for p in params.split(","):
            *words, pname = p.replace("const", " ").replace("__restrict__", " ").replace("*", " ").split()  # fmt: skip
            found[name].append((" ".join(words), "*" in p, pname))
    return found


class HostModule:
    """``cupy.RawModule(code=, options=, name_expressions=)``, compiled by g++ for the host."""

    def __init__(self, folder: Path, code: str, options=(), name_expressions=()):
        self.expressions, self.parameters = list(name_expressions), kernel_parameters(code)
        table = ", ".join(f"reinterpret_cast<void*>(&{e})" for e in self.expressions)
        text = f'{HOST_PRELUDE}{code}\nextern "C" {{ void* host_kernels[] = {{{table}}}; }}\n'
        lib = folder / f"k{hashlib.sha1(text.encode()).hexdigest()[:12]}.so"
        if not lib.exists():
            lib.with_suffix(".cpp").write_text(text)
            cmd = ["g++", "-std=c++17", "-O1", "-shared", "-fPIC", "-o", lib, lib.with_suffix(".cpp")]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
        self.lib = ctypes.CDLL(str(lib))
        self.addresses = (ctypes.c_void_p * len(self.expressions)).in_dll(self.lib, "host_kernels")

    def get_function(self, expression: str):
        name, t, i = re.fullmatch(r"(\w+)<(\w+), ([\w ]+)>", expression).groups()
        bind = {"T": t, "I": i}
        params = [(bind.get(c, c), ptr, p) for c, ptr, p in self.parameters[name]]
        address = self.addresses[self.expressions.index(expression)]

        def launch(grid, block, args):
            assert len(grid) == len(block) == 1 and 0 < block[0] <= 1024 and 0 < grid[0] < 2**31
            assert len(args) == len(params), f"{expression} takes {len(params)} arguments. Received: {len(args)}"  # fmt: skip
            kinds, values = [], []
            for (ctype, pointer, pname), a in zip(params, args):
                want = np.dtype(C_TYPES[ctype])
                if pointer:
                    assert isinstance(a, np.ndarray) and a.dtype == want and a.flags.c_contiguous, f"{expression}: {pname} must be a contiguous {want} array. Received: {type(a).__name__} {getattr(a, 'dtype', '')}"  # fmt: skip
                    kinds.append(ctypes.c_void_p)
                    values.append(a.ctypes.data)
                else:  # CuPy passes a Python int as 8 bytes: every scalar must be typed
                    assert isinstance(a, np.generic) and a.dtype == want, f"{expression}: {pname} must be a {want} scalar. Received: {type(a).__name__}"  # fmt: skip
                    kinds.append(C_SCALARS[want.type])
                    values.append(a.item())
            ctypes.CFUNCTYPE(None, *kinds)(address)(*values)

        return launch


def cuda_on_host(folder: Path):
    """kernels/cuda.py, loaded afresh with ``cupy`` bound to the stand-in (NumPy arrays)."""
    cp = types.ModuleType("cupy")
    for name in ("ndarray", "ascontiguousarray", "empty", "empty_like", "zeros_like", "ones", "matmul"):  # fmt: skip
        setattr(cp, name, getattr(np, name))
    cp.RawModule = lambda **kw: HostModule(folder, **kw)
    cp.cuda = types.SimpleNamespace(get_device_id=lambda: 0)
    path = CUDA_PY
    spec = importlib.util.spec_from_file_location("minicnn.kernels._cuda_on_host", path)
    module = importlib.util.module_from_spec(spec)
    real, sys.modules["cupy"] = sys.modules.get("cupy"), cp
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("cupy")
        if real is not None:
            sys.modules["cupy"] = real
    return module
