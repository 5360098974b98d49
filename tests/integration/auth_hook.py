"""An --auth hook for the tests: token "reader" may consume public-*, token "admin" may do anything."""


class Reader:
    def may_consume(self, pattern: str) -> bool:
        return pattern.startswith("public-")

    def may_produce(self, pattern: str) -> bool:
        return False


class Admin:
    def may_consume(self, pattern: str) -> bool:
        return True

    def may_produce(self, pattern: str) -> bool:
        return True


def authenticate(options: dict):
    return {"reader": Reader(), "admin": Admin()}.get(options.get("token"))
