"""The FaaS server, in layers (see docs/architecture.md)::

    api/ (tornado handlers)  ─►  protocol/ (the client session; direct socket)  ─►  engine/
    engine/ (service: submit, admission, group commit, outcomes, registry, feed)
        ─► store/ (SQLite: the only SQL)      ─► backends/ (base contract; local/ zygote pool)
    model.py (lifecycle moves, typed records, pricing, REPORT)     app.py (traitlets + wiring)

Each arrow is an import; none points back.  ``app`` is the only module that knows them all.
"""
