"""Data-parallel training over MPI, as ChainerMN does it: every process holds the whole model,
trains on its share of each global batch, and one all-reduce per step averages the gradients.

    mpiexec -n 2 minicnn train --distributed          # or, in a script run under mpiexec:
    model.fit(x, y, batch_size=32, distribute=minicnn.distributed.DataParallel())

- Before step 1, rank 0's weights and optimizer state are broadcast to every rank.
- Each epoch, one shuffle from a seed rank 0 draws and broadcasts, the same on every rank; each
  global batch (``size * batch_size`` rows) is split into equal shares, the last one as evenly
  as it goes, so every rank runs the same steps.
- Each step, one all-reduce of one buffer: every gradient times the rank's sample count, its
  loss times the same, the count, and its Ctrl-C flag. Dividing by the summed count gives the
  exact average over the global batch, whatever the shares; all ranks stop at the same step.
- Loss and accuracy are reduced as (sum, count); non-trained state (BatchNormalization's moving
  statistics) is averaged at the end of each epoch, so checkpoints and saved models agree.
- Dropout and augmentation draw from a per-rank stream seeded from (seed, rank): different on
  each rank, the same again for the same seed and rank count.
- Only rank 0 logs and runs callbacks that write files (``Callback.writes_files``).
- An exception on any rank aborts the whole job (``install_excepthook``): no rank waits forever
  in an all-reduce for one that died.
- CuPy arrays go through NCCL (``cupy.cuda.nccl``, its id broadcast over MPI) where it is
  available, else through host memory.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

import numpy as np

from minicnn import backend as _backend
from minicnn import data
from minicnn.training.step import TrainStep
from minicnn.training.strategy import Local


class DistributedError(RuntimeError):
    """A launch that cannot train data-parallel: no MPI, one process, mismatched arguments."""


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            "distributed training needs mpi4py and an MPI runtime: pip install -e '.[distributed]' "
            f"and launch with mpiexec -n 2 ... ({e})"
        ) from None
    return MPI


def world():
    """(rank, size) of this process in the MPI job: (0, 1) outside one, without loading MPI."""
    for rank, size in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        if size in os.environ:
            return int(os.environ.get(rank, 0)), int(os.environ[size])
    return 0, 1


def install_excepthook(comm=None) -> None:
    """An uncaught exception on this rank prints its traceback and aborts every rank (the
    behaviour of ``python -m mpi4py``), so a failure never leaves the others waiting."""
    comm = comm or _mpi().COMM_WORLD

    def abort(kind, value, tb):
        sys.stderr.flush()
        text = "".join(traceback.format_exception(kind, value, tb))
        os.write(2, text.encode("utf-8", "replace"))  # one write, then abort_all's pause
        abort_all(comm, 1)

    sys.excepthook = abort


def abort_all(comm, code: int) -> None:
    """End every rank of ``comm`` with exit ``code``, after a pause: mpiexec forwards a rank's
    output through a pipe, and an Abort right after a write could lose what was written."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.5)
    comm.Abort(code)


class DataParallel(Local):
    """``fit(distribute=DataParallel())``: train on every process of ``comm`` (default: all of
    the MPI job). ``threads``: CPU threads per process (default: this machine's cores shared
    among its ranks, unless NUMBA_NUM_THREADS or OMP_NUM_THREADS says otherwise)."""

    def __init__(self, comm=None, threads: int | None = None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = comm or MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_chief = self.rank == 0
        local = self.comm.Split_type(MPI.COMM_TYPE_SHARED)
        self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
        local.Free()
        self.threads = threads or _share_cores(self.local_size)
        if self.threads:
            _limit_threads(self.threads)
        self.seed = None
        self._nccl = None

    # -- before the first step -------------------------------------------------------------------

    def setup(self, model) -> None:
        """Rank 0's weights and optimizer state everywhere; the shuffle seed; per-rank streams."""
        be = model.backend
        if be.name == "cupy":  # one GPU per local rank
            be.xp.cuda.Device(self.local_rank % be.xp.cuda.runtime.getDeviceCount()).use()
        for layer in model.leaf_layers():
            for arrays in (layer.params, layer.state):
                for a in arrays.values():
                    self._broadcast(a)
        opt = model.optimizer
        has_slots = self.comm.bcast(opt.slots is not None, root=0)
        if has_slots:
            opt.iterations = self.comm.bcast(opt.iterations, root=0)
            if opt.slots is None:  # rank 0 resumed with slots, this one not: make them all,
                params = [layer.params[k] for layer, k in model.trainable_params()]
                opt.slots = [opt._all_slots(p) for p in params]  # the EMA's with the rule's
            names = opt.slot_names()  # one order on every rank, whatever order a file gave
            self.check_same(optimizer_slots=names)
            for slots in opt.slots:
                for name in names:
                    self._broadcast(slots[name])
        base = int(_backend.rng().integers(2**63)) if self.is_chief else None
        self.seed = self.comm.bcast(base, root=0)
        _backend.seed([self.seed, 1, self.rank])  # Dropout, augmentation: this rank's own stream

    def source(self, xs, targets, batch_size, shuffle, backend, weights=None):
        return data.ArrayData(
            xs, targets, batch_size, shuffle, backend, self.rank, self.size, self.seed, weights
        )

    def shard(self, n: int) -> tuple[int, int]:
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def make_step(self, model, check_finite):
        return DataParallelStep(model, check_finite, self)

    # -- reductions ------------------------------------------------------------------------------

    def allreduce(self, buf):
        """In place: ``buf`` (a 1-D float array on the model's device) summed over all ranks."""
        if isinstance(buf, np.ndarray):
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
            return buf
        nccl = self._nccl_comm(buf)
        if nccl is not None:
            from cupy.cuda import nccl as n

            kind = {np.float32: n.NCCL_FLOAT32, np.float64: n.NCCL_FLOAT64}[buf.dtype.type]
            stream = _backend.get_array_module(buf).cuda.get_current_stream()
            nccl.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, n.NCCL_SUM, stream.ptr)
            return buf
        host = buf.get()  # no NCCL: through host memory
        self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        buf.set(host)
        return buf

    def _nccl_comm(self, buf):
        if self._nccl is None:
            try:
                from cupy.cuda import nccl

                uid = self.comm.bcast(nccl.get_unique_id() if self.is_chief else None, root=0)
                self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
            except Exception:  # noqa: BLE001  (no NCCL in this CuPy: use the host)
                self._nccl = False
        return self._nccl or None

    def _broadcast(self, a) -> None:
        host = _backend.get_backend("numpy").to_numpy(a) if not isinstance(a, np.ndarray) else a
        host = np.ascontiguousarray(host)
        self.comm.Bcast(host, root=0)
        a[...] = _backend.get_array_module(a).asarray(host)

    def reduce_totals(self, totals) -> None:
        sums = np.array([*(float(v) for v in totals.sums), totals.seen], np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        totals.sums[...] = _backend.get_array_module(totals.sums).asarray(sums[:-1])
        totals.seen = int(sums[-1])

    def agree(self, flag: bool) -> bool:
        return bool(self.comm.allreduce(int(bool(flag)), op=self.MPI.MAX))

    def end_epoch(self, model) -> None:
        for layer in model.leaf_layers():  # moving statistics: the mean over ranks
            for a in layer.state.values():
                flat = a.reshape(-1).astype(np.float64)
                self.allreduce(flat)
                a[...] = (flat / self.size).reshape(a.shape).astype(a.dtype)

    def keep_callback(self, callback) -> bool:
        return self.is_chief or not getattr(callback, "writes_files", False)

    def check_same(self, **settings) -> None:
        """Raise DistributedError on every rank if any rank was given other ``settings``."""
        everyone = self.comm.allgather(settings)
        for name in settings:
            values = [s[name] for s in everyone]
            if any(v != values[0] for v in values):
                shown = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
                raise DistributedError(
                    f"every rank must be given the same {name}. Received: {shown}"
                )

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size}, threads={self.threads})"


class DataParallelStep(TrainStep):
    """A TrainStep whose gradients are averaged over every rank by one all-reduce per step."""

    def __init__(self, model, check_finite, strategy: DataParallel):
        super().__init__(model, check_finite)
        self.strategy = strategy
        self._stop = False
        self._buf = None

    @property
    def interrupted(self) -> bool:
        return self._stop  # agreed in the last all-reduce

    def gradients(self, xbs, tbs, wbs=None):
        if xbs[0].shape[0]:
            loss, parts, grads = super().gradients(xbs, tbs, wbs)
            xp = self.model.backend.xp  # every rank sends every gradient, zeros where none
            return loss, parts, [xp.zeros_like(layer.params[k]) if g is None else g for g, (layer, k) in zip(grads, self.params)]  # fmt: skip
        xp = self.model.backend.xp  # an empty share of the last batch: it adds nothing
        grads = [xp.zeros_like(layer.params[k]) for layer, k in self.params]
        objectives = self.model.objectives
        zero = xp.zeros((), grads[0].dtype)
        parts = [None if lo is None else zero for lo in objectives.losses]
        return zero, parts, grads

    def reduce_gradients(self, grads, loss, n):
        """One buffer [g1 * n, g2 * n, ..., loss * n, n, stop], summed over ranks, then each
        divided by the total n: the average over the global batch."""
        xp = self.model.backend.xp
        sizes = [g.size for g in grads]
        total = sum(sizes) + 3
        if self._buf is None or self._buf.size != total:
            self._buf = xp.empty(total, dtype=grads[0].dtype)
        buf, at = self._buf, 0
        for g, size in zip(grads, sizes):
            xp.multiply(g.reshape(-1), n, out=buf[at : at + size])
            at += size
        buf[at] = loss * n
        buf[at + 1] = n
        buf[at + 2] = float(bool(self.interrupt()))
        self.strategy.allreduce(buf)
        count = buf[at + 1]
        self._stop = bool(buf[at + 2] > 0)
        buf[: at + 1] /= count
        out, at = [], 0
        for g, size in zip(grads, sizes):
            out.append(buf[at : at + size].reshape(g.shape))
            at += size
        return buf[at], out


def _share_cores(local_size: int) -> int | None:
    """This machine's cores over its ranks, unless the user chose a thread count."""
    if any(
        v in os.environ for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    ):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(local_size, 1))


def _limit_threads(n: int) -> None:
    """numba's and the BLAS's thread pools, set now: both libraries are loaded already."""
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
