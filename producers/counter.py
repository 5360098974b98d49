"""A wildcard family: ``counter-N`` is an object whose data depends on the number in its id.

``counter-3`` is ``{"n": 3, "squares": [0, 1, 4]}``. An id whose suffix is not a small number
(``counter-abc``) is a *stall*: the version is recorded but watchers get no data.
"""

from worker import Producer

MAX_N = 1000


class Counter(Producer):
    patterns = ["counter-*"]

    def produce(self, object_id):
        suffix = object_id.removeprefix("counter-")
        if not suffix.isdigit() or int(suffix) > MAX_N:
            return False, 1
        n = int(suffix)
        return {"n": n, "squares": [i * i for i in range(n)]}, 1
