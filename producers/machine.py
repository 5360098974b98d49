"""Live facts from the machine the worker runs on (via psutil): ``machine``.

The version is the time dependency ``{"Seconds:1": <current second>}``: while ``sync-notifier``
runs, ``Seconds:1`` advances every second, so the router produces ``machine`` again every second
and watchers get a small patch. Without the notifier it is produced when a first watcher arrives
and whenever the router asks again (a watcher re-subscribing with an older version).
"""

import os

import psutil

from common.deps import seconds
from worker import Producer


class Machine(Producer):
    patterns = ["machine"]

    def __init__(self):
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def produce(self, object_id):
        version = seconds(1)
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        data = {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpu_count": psutil.cpu_count(),
            "memory": {"total": memory.total, "available": memory.available, "percent": memory.percent},
            "load": [load1, load5, load15],
        }
        return data, version
