"""The notifier: the process that produces ``dep:*`` and ``Seconds:*`` objects for the router.

It is a producer session like a worker (it joins over ``worker.link``), so it lives with the worker;
``common/deps/`` keeps only the dependency API (``bump``, ``versions``, ``seconds``) and its SQLite and
PostgreSQL backends, which application code imports without any of the cluster's processes.

- ``process.py``: the notifier loop (``sync-notifier`` with no command);
- ``cli.py``: ``sync-notifier`` and its schema and trigger commands;
- ``bump_cli.py``: ``sync-bump``;
- ``ticker.py``: which ``Seconds:N`` objects are due (pure).
"""
