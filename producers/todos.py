"""A writable collection: ``todos/<list>`` is a shared to-do list, one item per task (issue 15).

Clients write it with ``collection-update`` (insert/remove/reset); every watcher gets the patch.
Storage is ``SEASYNC_COLLECTIONS`` (default: the SQLite file ``./seasync-collections.sqlite3``).
"""

from worker import Collection


class Todos(Collection):
    patterns = ["todos/*"]
