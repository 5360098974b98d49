"""A static object: ``hello`` never changes, so its version is a constant.

It is produced once, when the first watcher (or ``hello-shout``, which depends on it) asks,
and then served from the router's cache. In a real application the data lives elsewhere (a
database) and its version comes from there; whoever changes the data announces the new version
(seapig's ``SeapigDependency.bump`` and notifier), and the router then orders a new production.
"""

from worker import Producer

MESSAGE = "Hello, world!"
VERSION = 1


class Hello(Producer):
    patterns = ["hello"]

    def produce(self, object_id):
        return {"message": MESSAGE}, VERSION
