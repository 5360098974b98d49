"""An --auth hook for the tests: token "reader" may consume public-*, "viewer" anything but admin-* (the
example of router/auth.py), "admin" may do anything. Under a hook a session uploads only objects it
registered as a producer of (the store checks that for every hook)."""


class Reader:
    def may_consume(self, pattern: str) -> bool:
        return pattern.startswith("public-")

    def may_produce(self, pattern: str) -> bool:
        return False


class Viewer:
    def may_consume(self, name: str) -> bool:  # a pattern ("*") or an object id ("admin-keys")
        return not name.startswith("admin-")

    def may_produce(self, name: str) -> bool:
        return False


class Admin:
    def may_consume(self, pattern: str) -> bool:
        return True

    def may_produce(self, pattern: str) -> bool:
        return True


def authenticate(options: dict):
    return {"reader": Reader(), "viewer": Viewer(), "admin": Admin()}.get(options.get("token"))
