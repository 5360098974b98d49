"""An object built from another one: ``hello-shout`` is ``hello`` in capitals.

Its version is a dependency hash, ``{"hello": <the version of hello it was built from>}``. The
router reads it as "hello-shout depends on hello": it keeps ``hello`` alive while ``hello-shout``
is watched, and produces ``hello-shout`` again whenever ``hello`` gets a newer version.
It imports its neighbour directly: the producers directory is on sys.path.
"""

import hello

from worker import Producer


class Shout(Producer):
    patterns = ["hello-shout"]

    def produce(self, object_id):
        return {"message": hello.MESSAGE.upper()}, {"hello": hello.VERSION}
