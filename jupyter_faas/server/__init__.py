"""The FaaS server: tornado handlers over a service layer over the store and the pool.

Layers, each its own module: ``handlers``/``websocket`` (HTTP) -> ``invoker`` (service:
admission, lifecycle, logs) -> ``store`` (SQLite) and ``pool`` (zygote and execution
environments) -> ``memory`` (cgroup or watchdog limits). ``app`` wires them up.
"""
