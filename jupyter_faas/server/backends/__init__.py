"""Where invocations run: :mod:`.base` states the contract; :mod:`.local` is this machine's
zygote and forked environments.  A Dask cluster and exec'd custom runtimes are siblings
to come."""
