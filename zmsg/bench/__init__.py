"""``zmsg bench``: zmsg measured against raw pyzmq doing the same work, in the same run.

Modules: ``workloads`` (W1-W4, fixed), ``service`` (the service measured), ``raw`` (the raw
pyzmq baseline, server and client), ``zclient`` (the zmsg client side), ``worker`` (a client
process), ``procs`` (starting and reaping processes), ``runner`` (one run), ``report`` (table,
JSON, progress), ``sweep`` (in-flight x payload sweep and its plot), ``cli`` (the subcommand).
Nothing here is imported by ``import zmsg``.
"""
