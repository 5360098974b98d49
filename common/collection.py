"""Writable collections: the pure rules of an update, shared by the worker that applies it and the clients.

A collection is an object whose value is ``{"<item id>": item, ...}``; every item is a JSON object with a
string ``"id"``, unique in the collection (shared-state's model). An update is ``insert`` (items), ``remove``
(ids) and ``reset``: ``remove`` runs before the inserts, an inserted item replaces the item with its id,
``reset`` clears the collection first (``remove`` is then ignored). The whole update applies or nothing does.

Nothing here does I/O: the worker's storage (worker/collection/) and the clients' views (common/client/) call
these functions so that "what an update means" is written once.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator, NamedTuple

MAX_UPDATE_ITEMS = 10_000
"""Items inserted plus ids removed in one update: bigger writes are split by the writer (a bound per message)."""
MAX_ITEM_ID_LENGTH = 1024


class UpdateError(ValueError):
    """An update that cannot apply; ``code`` is the stable code of the error frame that answers it."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


class Update(NamedTuple):
    """A checked update: what :func:`apply_update` applies."""

    insert: list[dict[str, Any]]
    remove: list[str]
    reset: bool

    @property
    def empty(self) -> bool:
        """Nothing to do (shared-state's "noop"): the version does not move."""
        return not self.insert and not self.remove and not self.reset


class Change(NamedTuple):
    """What happened to one item: ``new`` None = removed, ``old`` None = inserted, both = replaced."""

    id: str
    new: dict[str, Any] | None
    old: dict[str, Any] | None


def check_update(insert: Any = None, remove: Any = None, reset: Any = False) -> Update:
    """Validate the three fields of an update (missing ``insert``/``remove`` mean ``[]``) or raise UpdateError."""
    insert = [] if insert is None else insert
    remove = [] if remove is None else remove
    if not isinstance(insert, list):
        raise UpdateError(f"'insert' must be a list of items, not {type(insert).__name__}", "invalid-update")
    if not isinstance(remove, list):
        raise UpdateError(f"'remove' must be a list of item ids, not {type(remove).__name__}", "invalid-update")
    if not isinstance(reset, bool):
        raise UpdateError(f"'reset' must be true or false, not {type(reset).__name__}", "invalid-update")
    if len(insert) + len(remove) > MAX_UPDATE_ITEMS:
        raise UpdateError(f"an update holds at most {MAX_UPDATE_ITEMS} items and ids in all, this one "
                          f"{len(insert) + len(remove)}: split it", "update-too-large")
    for index, item in enumerate(insert):
        if not isinstance(item, dict):
            raise UpdateError(f"insert[{index}] must be a JSON object, not {type(item).__name__}", "invalid-item")
        _check_item_id(item.get("id"), f"insert[{index}].id")
    for index, item_id in enumerate(remove):
        _check_item_id(item_id, f"remove[{index}]")
    return Update(insert, remove, reset)


def _check_item_id(item_id: Any, where: str) -> None:
    if not isinstance(item_id, str):
        shown = "missing" if item_id is None else f"of type {type(item_id).__name__}"
        raise UpdateError(f"{where} must be a string (the item's id), it is {shown}", "invalid-item")
    if not item_id or len(item_id) > MAX_ITEM_ID_LENGTH:
        raise UpdateError(f"{where} must be 1 to {MAX_ITEM_ID_LENGTH} characters long", "invalid-item")


def apply_update(items: dict[str, Any], update: Update) -> dict[str, Any]:
    """The collection after ``update``: a new dict (``items`` is left as it was, so a failure changes nothing)."""
    result: dict[str, Any] = {} if update.reset else dict(items)
    if not update.reset:
        for item_id in update.remove:
            result.pop(item_id, None)
    for item in update.insert:
        result[item["id"]] = item
    return result


def changes(old: dict[str, Any] | None, new: dict[str, Any] | None) -> Iterator[Change]:
    """Per-item changes between two values of a collection, removals first, then inserts and replacements in
    the new value's order. Items equal in both are not changes."""
    old = old if isinstance(old, dict) else {}
    new = new if isinstance(new, dict) else {}
    for item_id, item in old.items():
        if item_id not in new:
            yield Change(item_id, None, item)
    for item_id, item in new.items():
        before = old.get(item_id)
        if before is None or before != item:
            yield Change(item_id, item, before)


def ids(items: Iterable[dict[str, Any]]) -> list[str]:
    """The ids of items (in order): what a writer removes to undo its inserts."""
    return [item["id"] for item in items]


def undo_of(items: dict[str, Any], update: Update) -> dict[str, Any]:
    """What turns the value after ``update`` back into ``items``: per item id it touches, the item it held
    before (None: it was absent). Kept by the storage per version, so the value of an earlier version can
    be rebuilt and a client holding it after a router restart gets a patch, not the whole value."""
    touched: Iterable[str] = (list(items) if update.reset else update.remove)
    undo: dict[str, Any] = {item_id: items.get(item_id) for item_id in touched}
    for item in update.insert:
        undo.setdefault(item["id"], items.get(item["id"]))
    return undo


def apply_undo(items: dict[str, Any], undo: dict[str, Any]) -> dict[str, Any]:
    """``items`` one version earlier (``undo`` from :func:`undo_of`); a new dict."""
    result = dict(items)
    for item_id, before in undo.items():
        if before is None:
            result.pop(item_id, None)
        else:
            result[item_id] = before
    return result
