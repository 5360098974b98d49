"""Live facts from the machine the worker runs on (via psutil): ``machine``.

The version is the current second, so every production is newer than the last one. Nothing
re-orders production by itself: the object is produced when a first watcher arrives, and again
whenever the router asks (a watcher re-subscribing with an older version, a worker restart).
"""

import os
import time

import psutil

from worker import Producer


class Machine(Producer):
    patterns = ["machine"]

    def __init__(self):
        psutil.cpu_percent(interval=None)  # the first call only starts the measurement

    def produce(self, object_id):
        memory = psutil.virtual_memory()
        load1, load5, load15 = os.getloadavg()
        data = {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "cpu_count": psutil.cpu_count(),
            "memory": {"total": memory.total, "available": memory.available, "percent": memory.percent},
            "load": [load1, load5, load15],
        }
        return data, int(time.time())
