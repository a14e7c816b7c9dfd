"""Adapters for the peer frameworks, each behind the same small interface as jupyter_faas.

An adapter is started once per run of its system and offers::

    call(fn, *args)                     one synchronous round trip (W1, W4)
    map(fn, items)                      one task per item, results in order (W2)
    concurrent_map(fn, items, n)        at most n at once, results in order (W3)
    cold(tag, with_numpy)               a new worker to its first result (W5): seconds
    init_map(init_s, alloc_mb, n, item_s, concurrency)
                                        W6: a pool whose workers run a slow, large INIT, then
                                        n items: (wall s, total PSS MB, one worker's RSS MB)

A method that a framework has no honest equivalent for raises ``NotApplicable``
with the reason, which the report prints instead of a number.
"""

from __future__ import annotations

import abc
import concurrent.futures
import multiprocessing
import os
import tempfile
import time

from . import tasks

WORKERS = 2  # the machines have 2 cores; every pool gets as many workers as cores


class NotApplicable(Exception):
    """This framework has no honest equivalent of the workload (the message says why)."""


class System(abc.ABC):
    name = "?"

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    @abc.abstractmethod
    def call(self, fn, *args):
        """One synchronous round trip: ``fn(*args)`` in a worker."""

    @abc.abstractmethod
    def map(self, fn, items):
        """One task per item, results in order."""

    def concurrent_map(self, fn, items, concurrency):
        raise NotApplicable("no way to run that many at once")

    def cold(self, tag: str, with_numpy: bool) -> float:
        raise NotApplicable("no separate worker start to time")

    def init_map(self, init_s, alloc_mb, n, item_s, concurrency, snapshot=True):
        raise NotApplicable("no per-worker INIT in this adapter")


def _cold_fn(with_numpy):
    return tasks.uses_numpy if with_numpy else tasks.inc


class ProcessPool(System):
    """concurrent.futures.ProcessPoolExecutor (fork), the stdlib baseline."""

    name = "ProcessPoolExecutor"

    def _executor(self, workers):
        return concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("fork"))

    def start(self):
        self.ex = self._executor(WORKERS)

    def close(self):
        self.ex.shutdown()
        if hasattr(self, "wide"):
            self.wide.shutdown()

    def call(self, fn, *args):
        return self.ex.submit(fn, *args).result()

    def map(self, fn, items):
        return list(self.ex.map(fn, items))  # chunksize=1: one task per item

    def concurrent_map(self, fn, items, concurrency):
        if not hasattr(self, "wide"):
            self.wide = self._executor(concurrency)
            list(self.wide.map(tasks.noop, range(concurrency * 2)))  # fork them before timing
        return list(self.wide.map(fn, items))

    def cold(self, tag, with_numpy):
        started = time.perf_counter()
        with self._executor(1) as ex:
            ex.submit(_cold_fn(with_numpy), 1).result()
            return time.perf_counter() - started

    def init_map(self, init_s, alloc_mb, n, item_s, concurrency, snapshot=True):
        # A fresh pool whose workers each run INIT (initializer=), as a new model version would.
        started = time.perf_counter()
        with concurrent.futures.ProcessPoolExecutor(
                concurrency, mp_context=multiprocessing.get_context("fork"),
                initializer=tasks.w6_init, initargs=(init_s, alloc_mb)) as ex:
            out = list(ex.map(tasks.w6_item, [item_s] * n))
            wall = time.perf_counter() - started
            assert all(o[2] == alloc_mb * 1024 * 1024 for o in out)
            total, one = tasks.pss_mb(list(ex._processes))  # every worker ran INIT
        return wall, total, one


class MultiprocessingPool(System):
    name = "multiprocessing.Pool"

    def start(self):
        self.pool = multiprocessing.get_context("fork").Pool(WORKERS)

    def close(self):
        self.pool.terminate()
        self.pool.join()
        if hasattr(self, "wide"):
            self.wide.terminate()
            self.wide.join()

    def call(self, fn, *args):
        return self.pool.apply(fn, args)

    def map(self, fn, items):
        return self.pool.map(fn, items, chunksize=1)

    def concurrent_map(self, fn, items, concurrency):
        if not hasattr(self, "wide"):
            self.wide = multiprocessing.get_context("fork").Pool(concurrency)
        return self.wide.map(fn, items, chunksize=1)

    def cold(self, tag, with_numpy):
        started = time.perf_counter()
        pool = multiprocessing.get_context("fork").Pool(1)
        try:
            pool.apply(_cold_fn(with_numpy), (1,))
            return time.perf_counter() - started
        finally:
            pool.terminate()
            pool.join()


class Loky(ProcessPool):
    """loky's reusable executor: ProcessPoolExecutor's interface, its own process management."""

    name = "loky"

    def _executor(self, workers):
        import loky
        return loky.ProcessPoolExecutor(workers)


class Dask(System):
    """dask.distributed LocalCluster: 2 worker processes, 1 thread each."""

    name = "Dask"

    def start(self):
        from distributed import Client, LocalCluster
        self.cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                    dashboard_address=None)
        self.client = Client(self.cluster)

    def close(self):
        self.client.close()
        self.cluster.close()
        if hasattr(self, "wide"):
            self.wide_client.close()
            self.wide.close()

    def call(self, fn, *args):
        return self.client.submit(fn, *args, pure=False).result()

    def map(self, fn, items):
        return self.client.gather(self.client.map(fn, items, pure=False))

    def concurrent_map(self, fn, items, concurrency):
        from distributed import Client, LocalCluster
        if not hasattr(self, "wide"):
            # The same 2 processes, with enough threads for the concurrency asked.
            self.wide = LocalCluster(n_workers=WORKERS, threads_per_worker=concurrency // WORKERS,
                                     processes=True, dashboard_address=None)
            self.wide_client = Client(self.wide)
        return self.wide_client.gather(self.wide_client.map(fn, items, pure=False))

    def init_map(self, init_s, alloc_mb, n, item_s, concurrency, snapshot=True):
        # Worker setup on the running cluster (client.run: once per worker process), then the map.
        self.concurrent_map(tasks.noop, [0], concurrency)  # the wide cluster, started untimed
        client = self.wide_client
        started = time.perf_counter()
        client.run(tasks.w6_init, init_s, alloc_mb)
        out = client.gather(client.map(tasks.w6_item, [item_s] * n, pure=False))
        wall = time.perf_counter() - started
        assert all(o[2] == alloc_mb * 1024 * 1024 for o in out)
        total, one = tasks.pss_mb(client.run(os.getpid).values())
        client.run(tasks.w6_init, 0, 0)  # let the memory go
        return wall, total, one

    def cold(self, tag, with_numpy):
        # A new worker process joins the running cluster; time until it returns a result.
        before = set(self.client.scheduler_info()["workers"])
        started = time.perf_counter()
        self.cluster.scale(len(before) + 1)
        self.client.wait_for_workers(len(before) + 1)
        new = sorted(set(self.client.scheduler_info()["workers"]) - before)
        self.client.submit(_cold_fn(with_numpy), 1, workers=new, pure=False).result()
        elapsed = time.perf_counter() - started
        self.cluster.scale(len(before))
        deadline = time.monotonic() + 30
        while len(self.client.scheduler_info()["workers"]) > len(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        return elapsed


class IPyParallel(System):
    """ipyparallel: a controller and 2 engines, load-balanced view; its own IPYTHONDIR."""

    name = "ipyparallel"

    def start(self):
        os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="bench-ipython-")
        import ipyparallel
        self.cluster = ipyparallel.Cluster(n=WORKERS, log_level=40)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(WORKERS, timeout=120)
        self.view = self.rc.load_balanced_view()

    def close(self):
        self.rc.close()
        self.cluster.stop_cluster_sync()

    def call(self, fn, *args):
        return self.view.apply_sync(fn, *args)

    def map(self, fn, items):
        return list(self.view.map_sync(fn, items))  # load-balanced: chunksize 1, a task per item

    def concurrent_map(self, fn, items, concurrency):
        raise NotApplicable(f"one task at a time per engine ({WORKERS} engines)")

    def cold(self, tag, with_numpy):
        raise NotApplicable("engines are started by the cluster, not per task")


class _W6Actor:
    """W6 for Ray: an actor whose constructor runs INIT."""

    def __init__(self, init_s, alloc_mb):
        tasks.w6_init(init_s, alloc_mb)

    def run(self, item_s):
        return tasks.w6_item(item_s)

    def pid(self):
        return os.getpid()


class Ray(System):
    name = "Ray"

    def start(self):
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        self.ray = ray
        ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="bench-ray-"))
        self.remotes = {}

    def close(self):
        self.ray.shutdown()

    def _remote(self, fn, num_cpus=1):
        key = (fn, num_cpus)
        if key not in self.remotes:
            self.remotes[key] = self.ray.remote(num_cpus=num_cpus)(fn)
        return self.remotes[key]

    def call(self, fn, *args):
        return self.ray.get(self._remote(fn).remote(*args))

    def map(self, fn, items):
        f = self._remote(fn)
        return self.ray.get([f.remote(x) for x in items])

    def concurrent_map(self, fn, items, concurrency):
        # Each task claims a share of a CPU so `concurrency` of them run at once.
        f = self._remote(fn, num_cpus=WORKERS / concurrency)
        return self.ray.get([f.remote(x) for x in items])

    def init_map(self, init_s, alloc_mb, n, item_s, concurrency, snapshot=True):
        from ray.util import ActorPool
        cls = self.ray.remote(num_cpus=WORKERS / concurrency)(_W6Actor)
        started = time.perf_counter()
        actors = [cls.remote(init_s, alloc_mb) for _ in range(concurrency)]
        out = list(ActorPool(actors).map(lambda a, v: a.run.remote(v), [item_s] * n))
        wall = time.perf_counter() - started
        assert all(o[2] == alloc_mb * 1024 * 1024 for o in out)
        total, one = tasks.pss_mb(self.ray.get([a.pid.remote() for a in actors]))
        for actor in actors:
            self.ray.kill(actor)
        return wall, total, one

    def cold(self, tag, with_numpy):
        # A new actor is a new worker process; time it to its first result.
        fn = _cold_fn(with_numpy)

        class Cold:
            def run(self, x):
                return fn(x)
        actor_cls = self.ray.remote(num_cpus=0)(Cold)
        started = time.perf_counter()
        actor = actor_cls.remote()
        self.ray.get(actor.run.remote(1))
        elapsed = time.perf_counter() - started
        self.ray.kill(actor)
        return elapsed


PEERS = {cls.name: cls for cls in (ProcessPool, MultiprocessingPool, Loky, Dask, IPyParallel, Ray)}
