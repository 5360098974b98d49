"""An --auth hook for the collection tests: "editor" may read items/* and write items/shared; "reader"
may read items/* and has no may_write at all (an older hook: every write refused)."""


class Reader:
    def may_consume(self, name: str) -> bool:
        return name.startswith("items/")

    def may_produce(self, name: str) -> bool:
        return False


class Editor(Reader):
    def may_write(self, name: str) -> bool:
        return name == "items/shared"


def authenticate(options: dict):
    return {"editor": Editor(), "reader": Reader()}.get(options.get("token"))
