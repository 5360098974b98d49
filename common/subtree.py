"""Subtree subscriptions (issue 17 item 1): a JSON Pointer into an object, and the object's patches rebased to it.

A consumer that registers with ``"path": "/rows/17"`` (RFC 6901) holds only that subtree (``null`` when
absent). Its updates are the object's patch operations under the path, with the prefix cut off; an operation
that replaces, removes or adds an ancestor of the path, or that may shift the array the path indexes into,
becomes one replacement of the whole subtree with its new value. An update that touches nothing under the
path is not sent at all. Pure: no I/O; the store calls it once per (object version, held version, path).
"""

from __future__ import annotations

import re
from typing import Any

MAX_PATH_LENGTH = 1024
"""Characters of a path (a bound per registration: the store keeps one per session and object)."""
MAX_PATH_DEPTH = 64

_INDEX = re.compile(r"0|[1-9][0-9]*")


class PathError(ValueError):
    """A path that is not a JSON Pointer this server accepts."""


def check_path(path: Any) -> str | None:
    """The normalized pointer (each token escaped the one way), or None for the whole object (``""``)."""
    if not isinstance(path, str):
        raise PathError(f"'path' must be a JSON Pointer string such as \"/rows/17\", not {type(path).__name__}")
    if path == "":
        return None
    if not path.startswith("/"):
        raise PathError("'path' must be empty or start with '/' (a JSON Pointer, RFC 6901)")
    if len(path) > MAX_PATH_LENGTH:
        raise PathError(f"'path' is at most {MAX_PATH_LENGTH} characters")
    tokens = tokens_of(path)
    if len(tokens) > MAX_PATH_DEPTH:
        raise PathError(f"'path' is at most {MAX_PATH_DEPTH} levels deep")
    if re.search(r"~[^01]|~$", path):
        raise PathError("'path' has a '~' not followed by 0 or 1 (RFC 6901 escapes '~' as ~0 and '/' as ~1)")
    return "".join("/" + escape(t) for t in tokens)


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def tokens_of(pointer: str) -> list[str]:
    """The unescaped tokens of a pointer ("" has none)."""
    if not pointer:
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def resolve(data: Any, tokens: list[str]) -> Any:
    """The value at ``tokens`` in ``data``, or None if there is none."""
    node = data
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                return None
            node = node[token]
        elif isinstance(node, list):
            if not _INDEX.fullmatch(token) or int(token) >= len(node):
                return None
            node = node[int(token)]
        else:
            return None
    return node


def rebase(patch: list[dict[str, Any]], path: str, new_data: Any) -> list[dict[str, Any]]:
    """The operations of ``patch`` (old object -> ``new_data``) that a holder of the subtree at ``path``
    applies to its subtree: [] if the subtree is untouched, else rebased operations or one replacement
    of the whole subtree (``{"op": "replace", "path": "", "value": ...}``)."""
    out: list[dict[str, Any]] = []
    prefix = path + "/"
    for op in patch:
        kind, where = op.get("op"), op.get("path", "")
        if kind in ("move", "copy"):  # never made by common.diff; any one near the path: the whole subtree
            if _related(op.get("from", ""), path) or _related(where, path):
                return _whole(path, new_data)
            continue
        if where == path:
            if kind == "remove" and _in_list(path, new_data):
                return _whole(path, new_data)  # the next element moved into our index
            if kind == "remove":
                out.append({"op": "replace", "path": "", "value": None})
            else:
                out.append({"op": "replace", "path": "", "value": op.get("value")})
        elif where.startswith(prefix):
            rebased = dict(op)
            rebased["path"] = where[len(path):]
            out.append(rebased)
        elif path.startswith(where + "/") or where == "":
            return _whole(path, new_data)  # an ancestor changed
        elif kind in ("add", "remove") and _shifts(where, path, new_data):
            return _whole(path, new_data)  # an element inserted or removed before ours, in an array
    return out


def _whole(path: str, new_data: Any) -> list[dict[str, Any]]:
    return [{"op": "replace", "path": "", "value": resolve(new_data, tokens_of(path))}]


def _in_list(path: str, data: Any) -> bool:
    """``path`` names an element of an array (its parent is one in ``data``)."""
    return isinstance(resolve(data, tokens_of(path.rsplit("/", 1)[0])), list)


def _related(pointer: str, path: str) -> bool:
    return pointer == path or pointer.startswith(path + "/") or path.startswith(pointer + "/") or pointer == "" \
        or _sibling_index(pointer, path)


def _sibling_index(pointer: str, path: str) -> bool:
    """Both name elements of one array that is an ancestor of ``path`` (by their shape: index tokens)."""
    parent = pointer.rsplit("/", 1)[0]
    if not path.startswith(parent + "/"):
        return False
    mine = path[len(parent) + 1:].split("/", 1)[0]
    last = pointer[len(parent) + 1:]
    return bool(_INDEX.fullmatch(mine)) and (last == "-" or bool(_INDEX.fullmatch(last)))


def _shifts(where: str, path: str, new_data: Any) -> bool:
    """An add or remove at ``where`` moves the element ``path`` goes through: ``where`` names an element at
    or before it in an array that is an ancestor of ``path`` (an append, or a change after it, moves
    nothing; earlier operations that moved it have already made the whole subtree the answer)."""
    if not _sibling_index(where, path):
        return False
    parent = where.rsplit("/", 1)[0]
    container = resolve(new_data, tokens_of(parent))
    if container is not None and not isinstance(container, list):
        return False  # an object with index-like keys: a sibling key, nothing moves
    last = where[len(parent) + 1:]
    mine = path[len(parent) + 1:].split("/", 1)[0]
    return last != "-" and int(last) <= int(mine)


class _Node:
    """One token of the subscribed paths: its children by (escaped) token, and the path ending here if any."""

    __slots__ = ("children", "path")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.path: str | None = None


class PathIndex:
    """The subscribed paths of one object as a trie of their (escaped) pointer tokens, so that a push finds
    the few paths a patch can touch without rebasing the patch to every path (issue 17, stop 23).

    ``touched`` is conservative: every path for which ``rebase`` could return operations is in it (equal to,
    under or above an operation's path, or shifted by an add/remove in an array it goes through); ``rebase``
    and the store's "replaced by what it holds" check still decide for those. It never misses one: tokens are
    compared as ``rebase`` compares pointers (the strings between slashes, escapes and all).

    It also knows, per path, the last change under it (``record``, ``unchanged_since``), counted in the
    object's serials (1, 2, ... per version): a session holding a version the store no longer retains gets
    nothing, not its subtree's value again, when nothing under its path changed since."""

    __slots__ = ("paths", "floor", "_root")

    def __init__(self) -> None:
        self.paths: dict[str, int] = {}  # path -> serial of the last version that may have changed it
        self.floor = 0  # serial of the last version whose changes are not known (all paths may have changed)
        self._root = _Node()

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, path: str, serial: int) -> None:
        """Index ``path`` (a normalized pointer, not ""), ``serial`` being the latest version's: its changes
        before are not known, so it counts as changed then. Idempotent."""
        if path in self.paths:
            return
        node = self._root
        for token in path[1:].split("/"):
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _Node()
            node = child
        node.path = path
        self.paths[path] = serial

    def record(self, patch: list[dict[str, Any]] | None, serial: int) -> None:
        """Version ``serial`` changed the object by ``patch`` (from the version before it), or in a way
        not known (None: every path may have changed)."""
        touched = None if patch is None else self.touched(patch)
        if touched is None:
            self.floor = serial
            return
        paths = self.paths
        for path in touched:
            paths[path] = serial

    def unchanged_since(self, path: str, serial: int) -> bool:
        """True if the subtree at ``path`` (indexed) is the same in version ``serial`` as in the latest."""
        return serial >= self.floor and serial >= self.paths.get(path, serial + 1)

    def touched(self, patch: list[dict[str, Any]]) -> set[str] | None:
        """The indexed paths ``patch`` may change, or None for all of them (an operation on the root, or
        one this index cannot read: the caller then visits every path, as without an index)."""
        found: set[str] = set()
        for op in patch:
            kind = op.get("op")
            pointers = [op.get("path", "")]
            if kind in ("move", "copy"):  # (never made by common.diff) any element of the arrays: as rebase
                pointers.append(op.get("from", ""))
            for pointer in pointers:
                if not isinstance(pointer, str) or not pointer.startswith("/"):
                    return None  # "" (the whole object) or not a pointer: everything, conservatively
                self._mark(pointer, kind, found)
        return found

    def _mark(self, pointer: str, kind: Any, found: set[str]) -> None:
        """Add to ``found`` the paths above, at or under ``pointer``, and those it shifts (see _shifted)."""
        tokens = pointer[1:].split("/")
        node = self._root
        for depth, token in enumerate(tokens):
            if depth == len(tokens) - 1:
                self._shifted(node, token, kind, found)
            child = node.children.get(token)
            if child is None:
                return  # no path goes through here: nothing under it either
            node = child
            if node.path is not None:
                found.add(node.path)  # an ancestor of the pointer (or the pointer itself): replaced
        _collect(node, found)

    @staticmethod
    def _shifted(parent: _Node, last: str, kind: Any, found: set[str]) -> None:
        """The paths through an element of the array ``parent`` (if it is one) that an operation on its
        element ``last`` moves: an add or remove at index i shifts elements i and later (an append, "-",
        shifts nothing); a move or copy: every element, as ``rebase`` answers those with the whole subtree.
        Only index-like tokens are elements; whether ``parent`` is an array or an object is not checked (an
        object's index-like keys are visited for nothing, and rebase sends them nothing)."""
        if kind in ("move", "copy"):
            if last != "-" and not _INDEX.fullmatch(last):
                return
            first = 0
        elif kind in ("add", "remove") and _INDEX.fullmatch(last):
            first = int(last)
        else:
            return
        for token, child in parent.children.items():
            if _INDEX.fullmatch(token) and int(token) >= first:
                _collect(child, found)


def _collect(node: _Node, found: set[str]) -> None:
    """Every path at or under ``node``."""
    stack = [node]
    while stack:
        node = stack.pop()
        if node.path is not None:
            found.add(node.path)
        stack.extend(node.children.values())
