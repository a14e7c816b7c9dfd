"""``FaaSServer``: the configurable tornado server process (``jupyter faas serve``).

Configuration is traitlets (``jupyter_faas_config.py`` in a Jupyter config dir, or
``--FaaSServer.name=value`` on the command line).  The server binds loopback,
requires a token on every endpoint, and publishes its URL and token in a 0600
runtime file so kernels of the same user find it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import shutil
import signal
import sys
from pathlib import Path

import psutil
from jupyter_core.application import JupyterApp
from tornado import httpserver
from tornado.netutil import bind_sockets
from traitlets import Bool, Enum, Float, Integer, List, Unicode, default

from .. import __version__, limits, paths
from ..errors import ServerError
from .api import make_app
from .backends.local import BufferFiles, Pool, make_enforcer
from .backends.router import Router
from .compat import LambdaAPI, Packages
from .compat import routes as lambda_routes
from .engine import AsyncService, Monitoring
from .engine.recovery import sweep_periodically
from .engine.lease_leftovers import fold_leftovers
from .model import DEFAULT_PRICING, Pricing
from .protocol import DirectServer
from .store import Store
from .store.lock import StoreLock
from .triggers import Triggers

log = logging.getLogger("jupyter_faas.server")
#: allocations between collections of the youngest generation (Python's default is 700)
GC_YOUNG_THRESHOLD = 20_000
#: in the data directory: the port its last server bound, bound again by the next (``port`` 0)
LAST_PORT_FILE = "last-port"


class FaaSServer(JupyterApp):
    name = "jupyter-faas-serve"
    description = "Serve jupyter_faas functions from a pool of local execution environments."
    version = __version__

    ip = Unicode("127.0.0.1", config=True,
                 help="Address to bind. Loopback by default; anything else exposes your functions "
                      "to the network (the token still applies).")
    port = Integer(0, config=True, help="Port to bind; 0: the port this data directory's last server "
                   "bound, if it is free (function URLs and endpoints handed out stay valid across a "
                   "restart), else a free one. Written to the runtime file.")
    token = Unicode(config=True, help="Token every request must carry. Default: $JUPYTER_FAAS_TOKEN, "
                                      "else a new random token per start.")
    faas_data_dir = Unicode(config=True, help="Directory for the SQLite store. "
                                              "Default: <jupyter data dir>/faas.")
    max_concurrency = Integer(None, allow_none=True, config=True,
                              help="Cap on concurrently running invocations. Default None: limited "
                                   "only by memory_budget_mb, so I/O-bound functions fan out wide.")
    memory_budget_mb = Integer(config=True,
                               help="Sum of the memory sizes of running invocations may not exceed "
                                    "this. Default: 80% of physical memory.")
    throttle_wait = Float(2.0, config=True,
                          help="Seconds a sync invocation waits for a free slot before it is "
                               "throttled (TooManyRequestsException). map() and async calls queue.")
    max_payload_mb = Float(6.0, config=True,
                           help="Largest request and response payload in MB (Lambda's sync limit is 6), "
                                "counted in the bytes that travel inside messages. Large arrays "
                                "that a client on this machine passes through buffer files are "
                                "held to max_buffer_mb instead.")
    max_buffer_mb = Integer(0, config=True,
                            help="Largest total of the out-of-band buffers (numpy arrays and the like) "
                                 "an invocation's arguments or result may pass through files of "
                                 "<data dir>/buffers, in MB. 0 (the default): the function's memory, "
                                 "what its environment can hold; raising memory= raises it.")
    init_timeout = Float(float(limits.INIT_TIMEOUT_S), config=True,
                         help="Seconds INIT (a %%lambda cell's top-level code, init=) may take in an "
                              "execution environment, Lambda's INIT limit (10). Over it, the "
                              "invocations that waited for it end Runtime.InitTimeout.")
    idle_timeout = Float(300.0, config=True,
                         help="Seconds an idle execution environment is kept warm before it is stopped.")
    preload = List(Unicode(), default_value=[], config=True,
                   help="Modules the zygote imports once so every cold start has them (e.g. numpy).")
    learned_preload_mb = Integer(512, config=True,
                                 help="Learned preload: the zygote imports, in the background, the "
                                      "modules recently deployed functions imported (numpy, pandas...; "
                                      "kept in the store), while its memory stays under this many MB, "
                                      "so a new function's cold start finds them imported. 0: off "
                                      "(`preload` still applies).")
    memory_enforcement = Enum(["auto", "cgroup", "watchdog"], "auto", config=True,
                              help="How memory limits are enforced: cgroup (v1 memory controller, "
                                   "kernel-enforced), watchdog (RSS sampling + RLIMIT_AS), or auto "
                                   "(cgroup where writable, else watchdog). Applies on this machine "
                                   "and on each Dask worker (which says in /faas/api/status which it uses).")
    price_per_gb_second = Float(DEFAULT_PRICING.per_gb_second, config=True,
                                help="USD per GB-second for every REPORT's cost and the panel's estimates (Lambda x86 "
                                     "on-demand, first tier, us-east-1 by default).")
    price_per_request = Float(DEFAULT_PRICING.per_request, config=True,
                              help="USD per request for every REPORT's cost and the panel's estimates ($0.20 per million).")
    direct_socket = Bool(True, config=True,
                         help="Also serve invocations on a Unix socket in a private directory, so "
                              "sync calls from kernels on this machine skip the websocket's hops.")
    leases = Bool(True, config=True,
                  help="Lease warm environments to clients on this machine (over the direct socket): "
                       "their sync calls and maps then go straight to the environment, recorded in "
                       "a journal the server folds into the store. Off: every invocation crosses "
                       "the server.")
    lambda_api = Bool(True, config=True,
                      help="Serve Lambda's REST API (/2015-03-31/functions...) for boto3 and the AWS "
                           "CLI, SigV4-signed with the token as the secret access key.")
    lambda_zip_max_mb = Float(50.0, config=True,
                              help="Largest zip a Lambda API CreateFunction/UpdateFunctionCode takes, "
                                   "in MB (Lambda's direct-upload limit is 50).")
    lambda_unzipped_max_mb = Float(250.0, config=True,
                                   help="Largest unzipped size of a zip package, in MB (Lambda's is 250).")
    write_runtime_file = Bool(True, config=True, help="Publish URL and token in the runtime file.")
    share_buffers = Bool(True, config=True,
                         help="Pass large buffers (numpy arrays and the like, 1 MB and up) through "
                              "files in <data dir>/buffers between processes of this machine: "
                              "written once, mapped without a copy. Off: every byte travels inside "
                              "messages, as it does for a client on another machine.")
    buffer_orphan_s = Float(600.0, config=True,
                            help="Seconds after which a buffer file that no invocation names and "
                                 "nothing touched is deleted while the server runs (a client that "
                                 "died between writing a large argument and sending the call); at "
                                 "start, every such file is deleted.")
    versions_kept = Integer(256, config=True,
                            help="Function versions whose code, record and placement statistics "
                                 "the server keeps in memory (least recently used out; a version "
                                 "called again is read from the store).")
    buffer_spare_mb = Integer(1024, config=True,
                              help="Most MB the spare buffer files hold together: files with their "
                                   "pages cached, which large arguments and results are written "
                                   "over (faster than into new pages); 0: none. They follow recent "
                                   "use (as large as the largest recent buffer; 6 to 8 made while "
                                   "large calls come, at most 8), cost reclaimable page cache and "
                                   "allocated disk, and are dropped after idle_timeout without a "
                                   "large buffer: a server that never sees one pays nothing.")

    backend = Enum(["local", "dask"], "local", config=True,
                   help="Where a function that names no backend runs: local (execution environments "
                        "on this machine) or dask (on the workers of dask_scheduler). A function "
                        "chooses its own with @faas.function(backend=...).")
    dask_scheduler = Unicode("", config=True,
                             help="The Dask cluster of the dask backend: a scheduler address "
                                  "(tcp://host:8786), or local:N for a LocalCluster of N single-"
                                  "threaded worker processes started with the server. Empty: "
                                  "local:2 when backend=dask, else no Dask backend. The workers "
                                  "need jupyter_faas installed (its kernel_workers package).")
    dask_connect_timeout = Float(10.0, config=True,
                                 help="Seconds to wait for the Dask scheduler when connecting (at "
                                      "start, and again at an invocation after it was lost).")
    dask_memory_budget_mb = Integer(0, config=True,
                                    help="The memory budget of invocations on the Dask cluster (MB, "
                                         "the sum of the memory sizes of those running): they count "
                                         "against it, not against memory_budget_mb (this machine's). "
                                         "0: 80% of the sum of the workers' memory limits, read from "
                                         "the scheduler (no cap while a worker has none).")

    @default("token")
    def _default_token(self):
        return os.environ.get("JUPYTER_FAAS_TOKEN") or secrets.token_urlsafe(32)

    @default("faas_data_dir")
    def _default_data_dir(self):
        return str(paths.data_dir())

    @default("memory_budget_mb")
    def _default_budget(self):
        return int(psutil.virtual_memory().total / 1024 / 1024 * 0.8)

    def build(self):
        self.store = Store(Path(self.faas_data_dir) / "faas.sqlite")
        files = (BufferFiles(Path(self.faas_data_dir) / "buffers", self.buffer_spare_mb * 1024 * 1024,
                             keep_s=self.idle_timeout)
                 if self.share_buffers else None)
        self.envs_dir = paths.scratch_dir("envs")  # swept at start when its server is gone
        memory = make_enforcer(self.memory_enforcement, str(os.getpid()))
        pool = Pool(memory, Path(self.envs_dir), list(self.preload), self.idle_timeout,
                    files=files, max_buffer_bytes=self.max_buffer_mb * 1024 * 1024 or None,
                    learned=self.store.learned_modules(), on_learned=self.store.learn_modules,
                    preload_budget_mb=self.learned_preload_mb, init_timeout=self.init_timeout,
                    on_unlearned=self.store.forget_learned_modules,
                    journal_dir=str(Path(self.faas_data_dir) / "journal") if self.leases else None)
        pricing = Pricing(self.price_per_gb_second, self.price_per_request)
        self.pool = pool
        pool.version_stats_kept = max(1, self.versions_kept)
        self.dask = None
        backends = {"local": pool}
        if self.backend == "dask" or self.dask_scheduler:
            from .backends.dask import DaskBackend  # imports distributed: only when configured
            self.dask = backends["dask"] = DaskBackend(
                self.dask_scheduler or "local:2", secrets.token_hex(6), preload=list(self.preload),
                idle_timeout=self.idle_timeout, buffers_dir=str(files.dir) if files else None,
                connect_timeout=self.dask_connect_timeout, memory_enforcement=self.memory_enforcement,
                memory_budget_mb=self.dask_memory_budget_mb)
        # Each function runs on the backend it names, else on the default.
        backend = Router(backends, default=self.backend)
        self.service = AsyncService(self.store, backend, memory_budget_mb=self.memory_budget_mb,
                               max_concurrency=self.max_concurrency, throttle_wait=self.throttle_wait,
                               max_payload_bytes=int(self.max_payload_mb * 1024 * 1024), files=files,
                               pricing=pricing,
                               max_buffer_bytes=self.max_buffer_mb * 1024 * 1024 or None)
        # Provisioned environments coming up and templates made or refused: the panel re-reads.
        pool.on_change = self._environments_changed
        self.service.registry.kept = max(1, self.versions_kept)
        # A frame is one payload or a batch of small ones (the client caps batches at 8 MB).
        max_message = max(int(self.max_payload_mb * 1024 * 1024), 8 << 20) + (2 << 20)
        monitoring = Monitoring(self.store, pricing, before_read=self.service.fold_leases)
        self.triggers = Triggers(self.service)
        self.instance = secrets.token_hex(8)
        self.direct = (DirectServer(self.service, self.token, self.instance, max_message)
                       if self.direct_socket else None)
        lambda_api = None
        if self.lambda_api:
            packages = Packages(Path(self.faas_data_dir) / "lambda" / "code",
                                int(self.lambda_zip_max_mb * 1024 * 1024),
                                int(self.lambda_unzipped_max_mb * 1024 * 1024))
            lambda_api = LambdaAPI(self.service, packages)
            self.service.layers.files = lambda_api.layers  # notebook functions' layers too
        return make_app(lambda_routes() if lambda_api else [],
                        faas_service=self.service, faas_token=self.token,
                        faas_monitoring=monitoring, faas_instance=self.instance,
                        faas_direct=self.direct and self.direct.path, faas_lambda=lambda_api,
                        faas_shutdown=self.request_stop, websocket_max_message_size=max_message,
                        faas_triggers=self.triggers)

    def _environments_changed(self, name: str, version: int, what: str) -> None:
        if what == "provisioned":  # a FAILED config is kept so (not tried again at every start)
            self.service.settings.environments_changed(name)
        self.service.feed.function(name, version, what)

    def max_body_size(self) -> int:
        """The largest request body: a payload, or a base64 zip in CreateFunction's JSON."""
        largest = self.max_payload_mb
        if self.lambda_api:
            largest = max(largest, self.lambda_zip_max_mb * 4 / 3)
        return int(largest * 1024 * 1024) + (1 << 20)

    def _bind(self) -> list:
        """The listening sockets: ``port``, or (0) the last server's port when free, else any."""
        if self.port:
            return bind_sockets(self.port, self.ip)
        try:
            last = int((Path(self.faas_data_dir) / LAST_PORT_FILE).read_text())
            if 0 < last < 65536:
                return bind_sockets(last, self.ip)
        except (OSError, ValueError):
            pass  # none remembered, or taken by another process now: any free port
        return bind_sockets(0, self.ip)

    def request_stop(self) -> None:
        asyncio.get_running_loop().call_soon(self._stopping.set)

    def _owner_url(self, pid: int) -> str | None:
        info = paths.read_runtime_file()
        return f"at {info['url']}" if info and info.get("pid") == pid else None

    async def serve(self) -> None:
        self._stopping = asyncio.Event()
        # Before anything touches the store: a second server would "recover" the first's
        # live invocations (run them again) and take over its runtime file.
        self._store_lock = StoreLock.acquire(Path(self.faas_data_dir), self._owner_url)
        app = self.build()
        bound = self._bind()
        server = httpserver.HTTPServer(app, max_body_size=self.max_body_size())
        server.add_sockets(bound)
        port = bound[0].getsockname()[1]
        try:
            (Path(self.faas_data_dir) / LAST_PORT_FILE).write_text(str(port))
        except OSError as exc:
            log.warning("could not remember port %d for the next start: %s", port, exc)
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        self.url = f"http://{host}:{port}"
        self.triggers.base_url = self.url
        if self.direct is not None:
            await self.direct.start()
        # First what leased environments recorded before the last server stopped, then the rows.
        leased = fold_leftovers(self.service, str(Path(self.faas_data_dir) / "journal"))
        recovered = self.service.recover()
        recovered.update({"leased_ended": leased["ended"], "leased_failed": leased["failed"]})
        self.service.start_background()
        sweeper = (self.service.spawn(sweep_periodically(self.service, max(0.1, self.buffer_orphan_s)))
                   if self.service.files is not None else None)
        recovered.update(self.triggers.reconcile())
        self.service.settings.restore()  # provisioned concurrency is kept across restarts
        await self.pool.zygote()  # the first cold start should not pay for the zygote
        if self.dask is not None:
            try:
                await self.dask.connect()
            except Exception as exc:  # noqa: BLE001 - the local backend serves on; dask retries per call
                self.dask.last_error = str(exc)
                log.warning("could not connect to the Dask cluster %s (%s); Dask functions fail "
                            "until it is reachable", self.dask.address, exc)
        if os.environ.get("JUPYTER_FAAS_GC_TUNE", "1") != "0":
            # Every invocation allocates a few hundred short-lived objects: collect the young
            # generation less often, and never walk the (permanent) startup objects again.
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        if self.write_runtime_file:
            paths.write_runtime_file({"url": self.url, "token": self.token, "pid": os.getpid(),
                                      "version": __version__, "data_dir": self.faas_data_dir})
        log.info("jupyter_faas %s serving at %s (memory limits: %s; store: %s; recovered: %s)",
                 __version__, self.url, self.pool.memory.mode, self.store.path, recovered)
        print(f"jupyter_faas serving at {self.url}", flush=True)
        try:
            await self._stopping.wait()
        finally:
            if self.write_runtime_file:
                paths.remove_runtime_file(os.getpid())
            server.stop()
            if sweeper is not None:
                sweeper.cancel()
            self.triggers.close()
            if self.direct is not None:
                self.direct.close()
            await self.service.close()
            self.store.close()
            self._store_lock.release()
            shutil.rmtree(self.envs_dir, ignore_errors=True)
            log.info("jupyter_faas server stopped")

    def start(self) -> None:
        logging.basicConfig(level=logging.INFO, format="[%(name)s %(asctime)s] %(message)s")
        try:
            asyncio.run(self.serve())
        except ServerError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            sys.exit(1)


main = FaaSServer.launch_instance
