"""JSON Patch (RFC 6902): a fast, type-strict differ and a safe in-place applier.

Pure functions, no I/O. Values are JSON as orjson decodes it: ``dict`` (str keys), ``list``,
``str``, ``int``, ``float`` (finite), ``bool``, ``None``.

Equality is type-strict everywhere (``json_equal``): ``1``, ``1.0`` and ``True`` are three
different JSON values, and so are ``0.0`` and ``-0.0`` (they encode differently). Python's ``==``
is coarser (``1 == 1.0 == True``), so a differ that short-circuits on ``==`` silently drops type
changes. We still use ``==`` because it runs in C, but only as a filter: ``x != y`` proves the
values differ; ``x == y`` must be confirmed, which we do in bulk by comparing orjson encodings
(distinct for every type, also C speed). When that check fails (a type change, or only a
different key order) a slow iterative walk decides.

``make_patch(old, new)`` emits only ``add``, ``remove`` and ``replace`` (the seapig JS client
applies patches with fast-json-patch 1.x: no ``copy``, no ``move``). The algorithm:

* Identical objects (``is``) produce nothing; a type change produces ``replace``; scalars are
  compared type-strictly and replaced when they differ.
* Small containers (up to ``_SMALL`` members) are first compared as a whole: ``==`` then the
  encoding check, so an equal subtree costs one C-level pass. Large containers skip that whole
  pass, because scanning their members (below) detects equality at the same cost.
* Dicts: members of ``new`` missing from ``old`` are added, members of ``old`` missing from
  ``new`` removed, common members diffed recursively. For large dicts the common members are
  lined up as two value lists and scanned in chunks (``_match_len``), so only the members that
  differ cost Python work.
* Lists: the common prefix and suffix are trimmed with the same chunked scan, so an insert at
  the front or a delete in the middle of a 1,000-row list is one op, not a rewrite of every
  later row. What remains in the middle is walked greedily. At each mismatch ``_anchor`` looks
  for the nearest resynchronisation point: first a few small edits (change in place, one or two
  elements inserted or deleted; the order depends on which side has more elements left, so
  lists of repeated values still pair up sensibly), then a C-level ``list.index`` search up to
  ``_JUMP`` elements ahead for a run that was inserted or deleted. Changed elements are diffed
  recursively, inserted ones added, deleted ones removed, then the next equal run is skipped by
  the chunked scan. When the look-ahead keeps failing (a list that changed everywhere) it stops
  looking: if the ops made so far encode larger than the elements they produced, the whole list
  is replaced; otherwise the rest is paired by position (e.g. every row had one field changed).
* A subtree whose ops encode larger than the new value (measured with orjson, only when the op
  count is large compared with the container) becomes one ``replace``. The root is never
  replaced as a whole: a patch against a dict document always edits its members.

Chunked scan (``_match_len``): compare the orjson encodings of slices of growing size (8 up to
32 members). Equal bytes prove strict equality; on the first unequal chunk, the first ``!=``
member is located in C and the part before it is confirmed with one more encoding compare.
Cost is about two ``orjson.dumps`` of the equal region, with one Python step per chunk.

Complexity: linear in document size at C speed along the changed paths (a subtree on the path
to a change may be compared once per nesting level), plus Python work proportional to the
number of changes. Documents nested deeper than Python's recursion limit fall back to a patch
that replaces each changed top-level member.

``apply_patch(doc, patch)`` applies all six RFC 6902 operations in place and returns the result
(a new object when the root is replaced). Every problem raises ``PatchError`` (a ValueError)
naming the op and path, and the document is rolled back first, through an undo log of the
mutations made so far. The rollback restores the document to a JSON-equal state, but an object
member that was removed and restored moves to the end of its object's key order. Values taken
from the patch are inserted by reference (the patch is consumed; copy it to apply it twice).
``test`` follows RFC 6902: numbers compare by value (``1`` equals ``1.0``), booleans are not numbers.
``copy`` ops may copy at most ``MAX_COPIED_VALUES`` members per patch, so a patch that keeps
copying the root into itself (doubling it each time) is refused instead of exhausting memory.
Members are not bytes (one copied 500 kB string is one member), so a caller that stores the result
passes ``max_size``: the result's encoded size is then bounded from above as ops apply (the document's
size, plus the patch's own encoding, which bounds every value the patch brings, plus the encoding of
each value a ``copy`` duplicates), and a patch whose bound passes ``max_size`` raises
``PatchTooLarge`` before the copy that would pass it is made. The bound is on the result, not per op
or per patch: a small subtree copied into itself once per patch stops growing at ``max_size``.
"""

from __future__ import annotations

import re
from itertools import compress, count, filterfalse
from math import copysign
from operator import ne
from typing import Any

import orjson

__all__ = ["PatchError", "PatchTooLarge", "apply_patch", "json_equal", "make_patch", "patch_is_smaller"]

JSON = Any
Patch = list[dict[str, Any]]
# one logged mutation, a tuple whose first member is its kind (see _rollback)
Undo = list[tuple[Any, ...]]

_SMALL = 16  # containers up to this size get a whole-subtree equality pre-check
_CHUNK_FIRST = 8  # first chunk of a scan, doubled after each equal chunk...
_CHUNK_MAX = 32  # ...up to this many members (bigger wastes more on the chunk that differs)
# Look-ahead at a list mismatch: (x, y) means a[i + x] == b[j + y], i.e. resynchronise by
# pairing min(x, y) elements and removing/adding the rest. Which edits are likeliest depends on
# which side has more elements left: equal -> a change in place, b longer -> an insertion.
_ANCHORS_EVEN: tuple[tuple[int, int], ...] = ((1, 1), (0, 1), (1, 0), (2, 2), (1, 2), (2, 1), (0, 2), (2, 0), (3, 3))
_ANCHORS_MORE_NEW: tuple[tuple[int, int], ...] = ((0, 1), (1, 2), (1, 1), (0, 2), (2, 3), (1, 0), (2, 2), (0, 3))
_ANCHORS_MORE_OLD: tuple[tuple[int, int], ...] = tuple((y, x) for x, y in _ANCHORS_MORE_NEW)
_JUMP = 64  # then look this far for a[i] in b (a run inserted) or b[j] in a (a run deleted)
_REPLACE_OVERHEAD = len(b'{"op":"replace","path":"","value":}')

_MISSING: Any = object()
_dumps = orjson.dumps


# ---------------------------------------------------------------------------------------------
# Equality


def json_equal(a: JSON, b: JSON) -> bool:
    """Type-strict deep equality: bool is not int, int is not float, -0.0 is not 0.0."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    try:
        if a != b:
            return False
    except RecursionError:
        return _walk_equal(a, b)
    if t is dict or t is list:
        return _same(a, b) or _walk_equal(a, b)
    return t is not float or a != 0.0 or copysign(1.0, a) == copysign(1.0, b)


def _same(x: JSON, y: JSON) -> bool:
    """True if both encode to the same JSON bytes (proves strict equality); False if unsure."""
    try:
        return _dumps(x) == _dumps(y)
    except TypeError:  # orjson.JSONEncodeError: not JSON, or nested too deep
        return False


_NUMBERS = (int, float)


def _walk_equal(a: JSON, b: JSON, numeric: bool = False) -> bool:
    """Definitive iterative deep equality (no recursion limit). ``numeric``: RFC 6902 ``test``
    rules, where numbers compare by value across int/float (booleans still are not numbers)."""
    stack = [(a, b)]
    pop, push = stack.pop, stack.append
    while stack:
        x, y = pop()
        if x is y:
            continue
        tx = type(x)
        if tx is not type(y):
            if numeric and tx in _NUMBERS and type(y) in _NUMBERS and x == y:
                continue
            return False
        if tx is dict:
            if len(x) != len(y):
                return False
            for k, v in x.items():
                w = y.get(k, _MISSING)
                if w is _MISSING:
                    return False
                push((v, w))
        elif tx is list:
            if len(x) != len(y):
                return False
            stack.extend(zip(x, y))
        elif x != y:
            return False
        elif tx is float and not numeric and x == 0.0 and copysign(1.0, x) != copysign(1.0, y):
            return False
    return True


def _small_equal(x: JSON, y: JSON) -> bool:
    """Strict equality of two containers: ``==`` in C, confirmed by encodings, else a walk."""
    return x == y and (_same(x, y) or _walk_equal(x, y))


# ---------------------------------------------------------------------------------------------
# Diff


def make_patch(old: JSON, new: JSON) -> Patch:
    """RFC 6902 ops (add/remove/replace only) turning ``old`` into ``new``.

    The ops hold references to values inside ``new``: encode the patch before mutating ``new``.
    """
    ops: Patch = []
    if old is new:
        return ops
    try:
        if type(old) is dict and type(new) is dict:
            _diff_dict(old, new, "", ops)
        else:
            _diff(old, new, "", ops)
    except RecursionError:
        return _flat_patch(old, new)
    return ops


def patch_is_smaller(patch: Patch, value: JSON) -> bool:
    """True if the patch encodes shorter than the value (send the patch, else the full value)."""
    return len(_dumps(patch)) < len(_dumps(value))


def _esc(key: str) -> str:
    """Escape one object key as a JSON Pointer token (RFC 6901: ~ -> ~0, / -> ~1)."""
    if "~" in key:
        key = key.replace("~", "~0")
    if "/" in key:
        key = key.replace("/", "~1")
    return key


def _diff(x: JSON, y: JSON, path: str, ops: Patch) -> None:
    """Append ops turning ``x`` (at ``path``) into ``y``."""
    if x is y:
        return
    t = type(x)
    if t is not type(y):
        ops.append({"op": "replace", "path": path, "value": y})
    elif t is dict:
        if len(x) <= _SMALL and len(y) <= _SMALL and _small_equal(x, y):
            return
        start = len(ops)
        _diff_dict(x, y, path, ops)
        _compact(ops, start, y, path)
    elif t is list:
        if len(x) <= _SMALL and len(y) <= _SMALL and _small_equal(x, y):
            return
        start = len(ops)
        _diff_list(x, y, path, ops)
        _compact(ops, start, y, path)
    elif x != y or (t is float and x == 0.0 and copysign(1.0, x) != copysign(1.0, y)):
        ops.append({"op": "replace", "path": path, "value": y})


def _compact(ops: Patch, start: int, value: JSON, path: str) -> None:
    """Replace the ops from ``start`` by one ``replace`` of ``value`` if that encodes smaller.

    Measured only when the ops are many for the container's size, so that the common case
    (a few ops in a big container) costs no encoding.
    """
    n = len(ops) - start
    if n < 2 or 2 * n < len(value):
        return
    try:
        if len(_dumps(ops[start:])) > len(_dumps(value)) + len(path) + _REPLACE_OVERHEAD:
            del ops[start:]
            ops.append({"op": "replace", "path": path, "value": value})
    except TypeError:
        pass


def _diff_dict(a: dict[str, JSON], b: dict[str, JSON], path: str, ops: Patch) -> None:
    if len(a) <= _SMALL and len(b) <= _SMALL:
        common = 0
        for k, y in b.items():
            x = a.get(k, _MISSING)
            if x is _MISSING:
                ops.append({"op": "add", "path": f"{path}/{_esc(k)}", "value": y})
            else:
                common += 1
                if x is not y:
                    _diff(x, y, f"{path}/{_esc(k)}", ops)
        if common < len(a):
            for k in a:
                if k not in b:
                    ops.append({"op": "remove", "path": f"{path}/{_esc(k)}"})
        return

    if len(a) == len(b) and list(a) == list(b):  # same keys, same order: values line up
        keys = list(b)
        xs, ys = list(a.values()), list(b.values())
        added: Any = ()
        removed: Any = ()
    else:
        keys = list(filter(a.__contains__, b))
        xs, ys = list(map(a.__getitem__, keys)), list(map(b.__getitem__, keys))
        added, removed = filterfalse(a.__contains__, b), filterfalse(b.__contains__, a)
    n = len(keys)
    i = 0
    while i < n:
        i += _match_len(xs, i, ys, i, n - i)
        if i < n:
            _diff(xs[i], ys[i], f"{path}/{_esc(keys[i])}", ops)
            i += 1
    for k in added:
        ops.append({"op": "add", "path": f"{path}/{_esc(k)}", "value": b[k]})
    for k in removed:
        ops.append({"op": "remove", "path": f"{path}/{_esc(k)}"})


def _match_len(xs: list[JSON], i: int, ys: list[JSON], j: int, limit: int) -> int:
    """Length of the strictly equal run ``xs[i:] ~ ys[j:]``, at most ``limit`` (see module doc)."""
    if limit <= 0 or xs[i] != ys[j]:
        return 0
    r = 0
    c = _CHUNK_FIRST
    dumps = _dumps
    while r < limit:
        if c > limit - r:
            c = limit - r
        xa = xs[i + r : i + r + c]
        ya = ys[j + r : j + r + c]
        try:
            same = dumps(xa) == dumps(ya)
        except TypeError:  # not JSON, or too deep for orjson: the walk below decides
            same = False
        if same:
            r += c
            if c < _CHUNK_MAX:
                c *= 2
            continue
        k = next(compress(count(), map(ne, xa, ya)), c)  # first member that differs by ==
        if k and (k == c or not _same(xa[:k], ya[:k])):
            for m in range(k):  # a type change (or only a key order difference) hides here
                if not _walk_equal(xa[m], ya[m]):
                    return r + m
        if k < c:
            return r + k
        r += c
    return r


def _diff_list(a: list[JSON], b: list[JSON], path: str, ops: Patch) -> None:
    na, nb = len(a), len(b)
    shortest = min(na, nb)
    p = _match_len(a, 0, b, 0, shortest)
    if p == na == nb:
        return
    s = 0
    if p < shortest:
        s = _match_len(a[p:][::-1], 0, b[p:][::-1], 0, shortest - p)
    ea, eb = na - s, nb - s
    i = j = p
    start = len(ops)
    misses = 8 + (ea + eb - 2 * p) // 16  # look-ahead failures allowed before pairing by position
    while i < ea and j < eb:
        x = y = 1
        if misses > 0:
            anchor = _anchor(a, i, ea, b, j, eb)
            if anchor:
                x, y = anchor
            else:
                misses -= 1
                if misses == 0 and _bigger(ops[start:], b[p:j]):
                    # Changed everywhere and the ops so far outweigh what they produced.
                    del ops[start:]
                    ops.append({"op": "replace", "path": path, "value": b})
                    return
        paired = x if x < y else y
        for t in range(paired):
            _diff(a[i + t], b[j + t], f"{path}/{j + t}", ops)
        if x > paired:
            at = f"{path}/{j + paired}"
            ops.extend({"op": "remove", "path": at} for _ in range(x - paired))
        for t in range(j + paired, j + y):
            ops.append({"op": "add", "path": f"{path}/{t}", "value": b[t]})
        i += x
        j += y
        if i < ea and j < eb:
            r = _match_len(a, i, b, j, min(ea - i, eb - j))
            i += r
            j += r
    if i < ea:
        at = f"{path}/{j}"
        ops.extend({"op": "remove", "path": at} for _ in range(ea - i))
    for t in range(j, eb):
        ops.append({"op": "add", "path": f"{path}/{t}", "value": b[t]})


def _anchor(a: list[JSON], i: int, ea: int, b: list[JSON], j: int, eb: int) -> tuple[int, int] | None:
    """Nearest (x, y) with a[i + x] strictly equal to b[j + y], within the look-ahead."""
    left_a, left_b = ea - i, eb - j
    if left_a == left_b:
        table = _ANCHORS_EVEN
    else:
        table = _ANCHORS_MORE_NEW if left_b > left_a else _ANCHORS_MORE_OLD
    for x, y in table:
        if x < left_a and y < left_b and json_equal(a[i + x], b[j + y]):
            return x, y
    y = _find(b, a[i], j + 1, min(eb, j + _JUMP)) - j
    x = _find(a, b[j], i + 1, min(ea, i + _JUMP)) - i
    if y > 0 and (x <= 0 or y <= x):
        return 0, y
    if x > 0:
        return x, 0
    return None


def _find(seq: list[JSON], value: JSON, lo: int, hi: int) -> int:
    """Index of the first member of seq[lo:hi] strictly equal to value, or -1 (C-level search).

    Gives up after a few members that are only ``==`` (``1`` vs ``True``): a heuristic.
    """
    for _ in range(4):
        if lo >= hi:
            break
        try:
            k = seq.index(value, lo, hi)
        except ValueError:
            return -1
        if json_equal(seq[k], value):
            return k
        lo = k + 1
    return -1


def _bigger(ops: Patch, values: list[JSON]) -> bool:
    """True if ``ops`` encode longer than ``values``."""
    try:
        return len(_dumps(ops)) > len(_dumps(values))
    except TypeError:
        return False


def _flat_patch(old: JSON, new: JSON) -> Patch:
    """Fallback for documents too deep to recurse into: replace each changed top-level member."""
    if type(old) is not dict or type(new) is not dict:
        return [] if _walk_equal(old, new) else [{"op": "replace", "path": "", "value": new}]
    ops: Patch = []
    for k, v in new.items():
        x = old.get(k, _MISSING)
        if x is _MISSING:
            ops.append({"op": "add", "path": "/" + _esc(k), "value": v})
        elif not _walk_equal(x, v):
            ops.append({"op": "replace", "path": "/" + _esc(k), "value": v})
    for k in old:
        if k not in new:
            ops.append({"op": "remove", "path": "/" + _esc(k)})
    return ops


# ---------------------------------------------------------------------------------------------
# Apply


class PatchError(ValueError):
    """A patch that is malformed or does not fit the document; the document is left unchanged."""


class PatchTooLarge(PatchError):
    """A patch whose result would encode larger than the ``max_size`` it was applied with."""


MAX_COPIED_VALUES = 200_000  # per patch, summed over its copy ops (a copy bomb is refused)
_BAD_ESCAPE = re.compile(r"~(?![01])")
_MAX_INDEX_DIGITS = 18  # longer indices cannot address any list (and int() would balk)

# Undo log entry kinds.
_ROOT, _DICT_SET, _DICT_DEL, _LIST_INS, _LIST_DEL, _LIST_SET = range(6)


def apply_patch(doc: JSON, patch: Patch, max_size: int | None = None, size: int = 0) -> JSON:
    """Apply RFC 6902 ``patch`` to ``doc`` in place and return the result.

    Raises ``PatchError`` (and nothing else) on any bad op, leaving ``doc`` as it was.
    ``max_size``: refuse (``PatchTooLarge``) a patch whose result could encode larger, before building
    it; ``size`` is then the encoded size of ``doc`` (an upper bound will do), see the module doc.
    """
    if not isinstance(patch, list):
        raise PatchError(f"a patch must be a list of operations, not {type(patch).__name__}")
    undo: Undo = []
    # [members a copy may still duplicate, bytes the result may still grow by (None: unbounded), max_size]
    copy_budget: list[Any] = [MAX_COPIED_VALUES, None, max_size]
    if max_size is not None:
        copy_budget[1] = max_size - size - _encoded_size(patch, "the patch")
        if copy_budget[1] < 0:
            raise PatchTooLarge(f"the result would encode to more than {max_size} bytes")
    root = doc
    n = 0
    try:
        # n names the failing op in the handlers below (ruff cannot see a use in an except clause)
        for n, op in enumerate(patch):  # noqa: B007
            root = _apply_op(root, op, undo, copy_budget)
    except PatchError as e:
        _rollback(undo)
        raise type(e)(f"op {n}{_describe(patch[n])}: {e}") from None
    except RecursionError:
        _rollback(undo)
        raise PatchError(f"op {n}{_describe(patch[n])}: value nested too deeply") from None
    except Exception as e:  # a bug of ours must still not escape as something else
        _rollback(undo)
        raise PatchError(f"op {n}: internal error ({type(e).__name__})") from e
    return root


def _describe(op: Any) -> str:
    """`` (remove /a/b)`` for error messages, when the op has that much shape."""
    if isinstance(op, dict) and isinstance(op.get("op"), str) and isinstance(op.get("path"), str):
        return f" ({_short(op['op'])} {_short(op['path'])})"
    return ""


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _member(op: dict[str, Any], name: str, kind: str) -> Any:
    value = op.get(name, _MISSING)
    if value is _MISSING:
        raise PatchError(f"{kind} needs a '{name}' member")
    return value


def _pointer(op: dict[str, Any], name: str, kind: str) -> list[str]:
    """Parse the JSON Pointer in ``op[name]`` into unescaped tokens."""
    text = _member(op, name, kind)
    if not isinstance(text, str):
        raise PatchError(f"{kind}: '{name}' must be a string, not {type(text).__name__}")
    if not text:
        return []
    if text[0] != "/":
        raise PatchError(f"{kind}: '{name}' {_short(text)!r} must be empty or start with '/'")
    tokens = text.split("/")
    del tokens[0]
    if "~" in text:
        for t, token in enumerate(tokens):
            if "~" in token:
                if _BAD_ESCAPE.search(token):
                    raise PatchError(f"{kind}: bad '~' escape in {name} {_short(text)!r}")
                tokens[t] = token.replace("~1", "/").replace("~0", "~")
    return tokens


def _index(token: str, size: int, allow_end: bool) -> int:
    """List index from a pointer token; ``allow_end``: ``size`` itself (and ``-``) are valid."""
    if token == "-":
        if allow_end:
            return size
        raise PatchError("index '-' (past the end) is only valid for add")
    if not (token.isascii() and token.isdigit()) or (token[0] == "0" and len(token) > 1):
        raise PatchError(f"{_short(token)!r} is not a list index")
    limit = size if allow_end else size - 1
    if len(token) > _MAX_INDEX_DIGITS or int(token) > limit:
        raise PatchError(f"index {_short(token)} is out of range (list has {size} items)")
    return int(token)


def _walk(root: JSON, tokens: list[str], upto: int) -> JSON:
    """The value at ``tokens[:upto]``."""
    node = root
    for t in range(upto):
        token = tokens[t]
        if isinstance(node, dict):
            node = node.get(token, _MISSING)
            if node is _MISSING:
                raise PatchError(f"member {_short(token)!r} not found")
        elif isinstance(node, list):
            node = node[_index(token, len(node), False)]
        else:
            raise PatchError(f"cannot look up {_short(token)!r} inside a {type(node).__name__}")
    return node


def _apply_op(root: JSON, op: Any, undo: Undo, copy_budget: list[Any]) -> JSON:
    if not isinstance(op, dict):
        raise PatchError(f"an operation must be an object, not {type(op).__name__}")
    kind = op.get("op", _MISSING)
    if kind is _MISSING:
        raise PatchError("missing 'op'")
    if not isinstance(kind, str):
        raise PatchError(f"'op' must be a string, not {type(kind).__name__}")
    if kind == "add":
        return _add(root, _pointer(op, "path", kind), _member(op, "value", kind), undo)
    if kind == "remove":
        path = _pointer(op, "path", kind)
        _remove(root, path, undo)
        return root
    if kind == "replace":
        return _replace(root, _pointer(op, "path", kind), _member(op, "value", kind), undo)
    if kind == "move":
        source, path = _pointer(op, "from", kind), _pointer(op, "path", kind)
        if len(source) < len(path) and path[: len(source)] == source:
            raise PatchError("move: cannot move a value into one of its own children")
        if source == path:
            _walk(root, source, len(source))  # must exist; otherwise a no-op
            return root
        return _add(root, path, _remove(root, source, undo), undo)
    if kind == "copy":
        source, path = _pointer(op, "from", kind), _pointer(op, "path", kind)
        value = _walk(root, source, len(source))
        if copy_budget[1] is not None:
            copy_budget[1] -= _encoded_size(value, "copy: the value") + len(op["path"])
            if copy_budget[1] < 0:
                raise PatchTooLarge(f"copy: the result would encode to more than {copy_budget[2]} bytes")
        return _add(root, path, _deep_copy(value, copy_budget), undo)
    if kind == "test":
        path, value = _pointer(op, "path", kind), _member(op, "value", kind)
        if not _walk_equal(_walk(root, path, len(path)), value, numeric=True):
            raise PatchError("test failed: the value there differs")
        return root
    raise PatchError(f"unknown op {_short(kind)!r}")


def _add(root: JSON, path: list[str], value: JSON, undo: Undo) -> JSON:
    if not path:
        undo.append((_ROOT,))
        return value
    parent = _walk(root, path, len(path) - 1)
    key = path[-1]
    if isinstance(parent, dict):
        undo.append((_DICT_SET, parent, key, parent.get(key, _MISSING)))
        parent[key] = value
    elif isinstance(parent, list):
        i = _index(key, len(parent), True)
        parent.insert(i, value)
        undo.append((_LIST_INS, parent, i))
    else:
        raise PatchError(f"cannot add {_short(key)!r} to a {type(parent).__name__}")
    return root


def _remove(root: JSON, path: list[str], undo: Undo) -> JSON:
    """Remove and return the value at ``path``."""
    if not path:
        raise PatchError("cannot remove the whole document")
    parent = _walk(root, path, len(path) - 1)
    key = path[-1]
    if isinstance(parent, dict):
        value = parent.pop(key, _MISSING)
        if value is _MISSING:
            raise PatchError(f"member {_short(key)!r} not found")
        undo.append((_DICT_DEL, parent, key, value))
    elif isinstance(parent, list):
        i = _index(key, len(parent), False)
        value = parent.pop(i)
        undo.append((_LIST_DEL, parent, i, value))
    else:
        raise PatchError(f"cannot remove {_short(key)!r} from a {type(parent).__name__}")
    return value


def _replace(root: JSON, path: list[str], value: JSON, undo: Undo) -> JSON:
    if not path:
        undo.append((_ROOT,))
        return value
    parent = _walk(root, path, len(path) - 1)
    key = path[-1]
    if isinstance(parent, dict):
        old = parent.get(key, _MISSING)
        if old is _MISSING:
            raise PatchError(f"member {_short(key)!r} not found")
        parent[key] = value
        undo.append((_DICT_SET, parent, key, old))
    elif isinstance(parent, list):
        i = _index(key, len(parent), False)
        undo.append((_LIST_SET, parent, i, parent[i]))
        parent[i] = value
    else:
        raise PatchError(f"cannot replace {_short(key)!r} in a {type(parent).__name__}")
    return root


def _encoded_size(value: JSON, what: str) -> int:
    """Bytes of ``value`` as encoded (C speed; the caller's budget bounds the total measured)."""
    try:
        return len(_dumps(value))
    except TypeError:  # orjson.JSONEncodeError: nested deeper than orjson encodes
        raise PatchError(f"{what} cannot be encoded (nested too deeply)") from None


def _rollback(undo: Undo) -> None:
    """Undo logged mutations, newest first (the root itself is never mutated by a root op)."""
    for entry in reversed(undo):
        kind = entry[0]
        if kind == _DICT_SET:
            _, d, key, old = entry
            if old is _MISSING:
                del d[key]
            else:
                d[key] = old
        elif kind == _DICT_DEL:
            _, d, key, old = entry
            d[key] = old
        elif kind == _LIST_INS:
            _, lst, i = entry
            del lst[i]
        elif kind == _LIST_DEL:
            _, lst, i, old = entry
            lst.insert(i, old)
        elif kind == _LIST_SET:
            _, lst, i, old = entry
            lst[i] = old


def _deep_copy(value: JSON, budget: list[int]) -> JSON:
    """Iterative deep copy of dicts and lists (``copy`` must not alias the source).

    ``budget[0]``: members this patch may still copy. Copying the root into itself doubles the
    document, so 30 such ops would otherwise ask for 2**30 times its size.
    """
    if not isinstance(value, (dict, list)):
        return value
    top: Any = {} if isinstance(value, dict) else []
    stack = [(value, top)]
    while stack:
        src, dst = stack.pop()
        budget[0] -= len(src)
        if budget[0] < 0:
            raise PatchError(f"copy: the patch copies more than {MAX_COPIED_VALUES} values")
        items = src.items() if isinstance(src, dict) else enumerate(src)
        for k, v in items:
            if isinstance(v, (dict, list)):
                c: Any = {} if isinstance(v, dict) else []
                stack.append((v, c))
                v = c
            if isinstance(dst, dict):
                dst[k] = v
            else:
                dst.append(v)
    return top
