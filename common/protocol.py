"""seapig 0.2 client messages: parsing and validation, and the server frames, encoded once.

``parse(raw)`` turns the bytes of one websocket frame into a validated message dict (only the fields the
router uses, under their 0.2 names) or raises ``ProtocolError`` with a message meant for a human: the
router sends it back to the client in an additive ``{"action": "error", ...}`` frame.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict, Union

from common import codec
from common.collection import UpdateError, check_update
from common.patterns import MAX_ID_LENGTH, PatternError, check_id, check_pattern, is_wildcard
from common.subtree import PathError, check_path
from common.versioning import Version, VersionError, check_version, is_null

CLIENT_ACTIONS = (
    "client-options-set",
    "object-consumer-register",
    "object-consumer-unregister",
    "object-producer-register",
    "object-producer-unregister",
    "object-patch",
    "collection-update",
    "collection-applied",
)


INVALID_ID = "invalid-id"
INVALID_PATTERN = "invalid-pattern"
INVALID_VERSION = "invalid-version"
PATCH_INVALID = "patch-invalid"
"""Error code of an ``object-patch`` whose ``patch`` is not a list: an upload that cannot apply."""

MAX_OPTIONS_BYTES = 16384  # options are echoed by introspection: keep them small
MAX_REF_BYTES = 1024
MAX_BASES = 4
"""Earlier versions a production may carry (``bases``), and versions an order names as held (``versions-held``)."""
"""Encoded size of a ``collection-update``'s ``ref``: the server echoes it back, so it stays small."""


class ProtocolError(ValueError):
    """An invalid client message; ``context`` names the offending action and id/pattern when known, and
    always holds the stable ``code`` of the error frame that answers it."""

    def __init__(self, message: str, code: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.context = {"code": code, **context}


def parse(raw: bytes | str) -> dict[str, Any]:
    """Decode and validate one client frame. Returns a dict with ``action`` and its checked fields."""
    try:
        message = codec.loads(raw)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}", "invalid-json") from None
    except RecursionError:
        raise ProtocolError("frame is nested too deeply", "too-deep") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"frame must be a JSON object with an 'action', not {type(message).__name__}",
                            "not-an-object")
    action = message.get("action")
    if action not in CLIENT_ACTIONS:
        shown = action[:64] if isinstance(action, str) else None  # never echo a huge string back
        raise ProtocolError(f"unknown action {shown if shown is not None else action!r:.80}; "
                            f"expected one of: {', '.join(CLIENT_ACTIONS)}", "unknown-action", request=shown)
    try:
        return _VALIDATORS[action](message)
    except (PatternError, VersionError) as exc:
        code = getattr(exc, "code", None) or (INVALID_VERSION if isinstance(exc, VersionError)
                                              else INVALID_ID if action in ("object-patch", "collection-update") else INVALID_PATTERN)
        context = {"request": action}
        for key in ("id", "pattern"):
            if isinstance(message.get(key), str):
                context[key] = message[key]
        raise ProtocolError(str(exc), code, **context) from None


def _version(message: dict[str, Any], key: str, default: Version = None) -> Version:
    if key not in message:
        return default
    try:
        return check_version(message[key])
    except VersionError as exc:
        raise VersionError(f"'{key}': {exc}", exc.code) from None


def _pattern_of(message: dict[str, Any]) -> str:
    # 0.2 uses 'pattern'; pre-0.2 clients sent 'id' for registrations.
    if "pattern" in message:
        return check_pattern(message["pattern"])
    if "id" in message:
        return check_pattern(message["id"])
    raise PatternError("'pattern' is required")


def _options_set(message: dict[str, Any]) -> dict[str, Any]:
    options = message.get("options")
    if not isinstance(options, dict):
        raise ProtocolError("'options' must be a JSON object", "invalid-options", request="client-options-set")
    try:  # introspection encodes them again: refuse what is too big or nested too deep to encode
        too_big = len(codec.dumps(options)) > MAX_OPTIONS_BYTES
    except TypeError as exc:
        raise ProtocolError(f"'options' cannot be encoded: {exc}", "invalid-options",
                            request="client-options-set") from None
    if too_big:
        raise ProtocolError(f"'options' must encode to at most {MAX_OPTIONS_BYTES} bytes", "options-too-large",
                            request="client-options-set")
    return {"action": "client-options-set", "options": options}


def _register(message: dict[str, Any]) -> dict[str, Any]:
    pattern = _pattern_of(message)
    known = _version(message, "version-known", None)
    out = {"action": message["action"], "pattern": pattern, "version-known": known}
    if message["action"] == "object-consumer-register" and message.get("path") is not None:
        try:
            path = check_path(message["path"])
        except PathError as exc:
            raise ProtocolError(str(exc), "invalid-path", request="object-consumer-register",
                                pattern=pattern) from None
        if path is not None and is_wildcard(pattern):
            raise ProtocolError("a 'path' needs an exact id, not a pattern with '*' (subtrees of one object)",
                                "path-with-pattern", request="object-consumer-register", pattern=pattern)
        out["path"] = path
    return out


def _unregister(message: dict[str, Any]) -> dict[str, Any]:
    return {"action": message["action"], "pattern": _pattern_of(message)}


def _patch(message: dict[str, Any]) -> dict[str, Any]:
    object_id = check_id(message.get("id"))
    out: dict[str, Any] = {"action": "object-patch", "id": object_id, "value": None, "patch": None}
    error = message.get("error")
    if error is not None:
        if not isinstance(error, str):
            raise ProtocolError("'error' must be a string describing the failure", "invalid-error",
                                request="object-patch", id=object_id)
        out["error"] = error[:2000]
    value = message.get("value")
    patch = message.get("patch")
    if value is not None:
        if not isinstance(value, (dict, bool)):
            raise ProtocolError("'value' must be a JSON object (the data), false (a stall) or true "
                                "(the version exists, data unknown)", "invalid-value", request="object-patch",
                                id=object_id)
        out["value"] = value
    elif patch is not None:
        if not isinstance(patch, list):
            # A stable code: the store treats this one as an upload that cannot apply (a cancel), not a refusal
            raise ProtocolError("'patch' must be a list of RFC 6902 operations", PATCH_INVALID, request="object-patch",
                                id=object_id)
        out["patch"] = patch
        out["version-old"] = _version(message, "version-old", 0)
    if out["value"] is not None or out["patch"] is not None:
        if message.get("version-new") is None:
            raise ProtocolError("'version-new' is required with 'value' or 'patch'", "version-required",
                                request="object-patch", id=object_id)
    out["version-new"] = _version(message, "version-new", None)
    bases = message.get("bases")
    if bases is not None and isinstance(out["value"], dict):
        out["bases"] = _bases(bases, object_id)
    return out


def _bases(bases: Any, object_id: str) -> list[tuple[Version, dict[str, Any]]]:
    """Additive: the data of earlier versions, oldest first, that a producer could rebuild for watchers the
    router holds nothing for (after a restart): [{"version": v, "value": {...}}, ...], at most MAX_BASES."""
    if not isinstance(bases, list) or len(bases) > MAX_BASES:
        raise ProtocolError(f"'bases' must be a list of at most {MAX_BASES} {{version, value}} objects",
                            "invalid-bases", request="object-patch", id=object_id)
    out = []
    for base in bases:
        if not isinstance(base, dict) or not isinstance(base.get("value"), dict) or base.get("version") is None:
            raise ProtocolError("each of 'bases' must be {\"version\": v, \"value\": {...}}", "invalid-bases",
                                request="object-patch", id=object_id)
        out.append((_version(base, "version", None), base["value"]))
    return out


def _collection_update(message: dict[str, Any]) -> dict[str, Any]:
    """A write to a collection (additive, shared-state's update): checked whole here, so the router never
    forwards an update that cannot apply."""
    object_id = check_id(message.get("id"))
    ref = message.get("ref")
    if ref is not None and len(codec.dumps(ref)) > MAX_REF_BYTES:
        raise ProtocolError(f"'ref' must encode to at most {MAX_REF_BYTES} bytes", "ref-too-large",
                            request="collection-update", id=object_id)
    try:
        update = check_update(message.get("insert"), message.get("remove"), message.get("reset", False))
    except UpdateError as exc:
        raise ProtocolError(str(exc), exc.code, request="collection-update", id=object_id, ref=ref) from None
    return {"action": "collection-update", "id": object_id, "insert": update.insert, "remove": update.remove,
            "reset": update.reset, "ref": ref}


def _collection_applied(message: dict[str, Any]) -> dict[str, Any]:
    """A worker's answer to ``collection-apply`` (sent by workers only; the store refuses it from clients):
    the new version and value once committed, or an error with a stable code (nothing was applied)."""
    object_id = check_id(message.get("id"))
    ticket = message.get("ticket")
    if not isinstance(ticket, str):
        raise ProtocolError("'ticket' must be the string of the collection-apply it answers", "invalid-ticket",
                            request="collection-applied", id=object_id)
    out: dict[str, Any] = {"action": "collection-applied", "id": object_id, "ticket": ticket}
    if "error" in message:
        error, code = message.get("error"), message.get("code")
        out["error"] = error if isinstance(error, str) else str(error)
        out["code"] = code if isinstance(code, str) else "collection-apply-failed"
        return out
    value = message.get("value")
    if not isinstance(value, dict):
        raise ProtocolError("'value' must be the collection's value (an object)", "invalid-value",
                            request="collection-applied", id=object_id)
    out["version"] = check_version(message.get("version"))
    out["value"] = value
    return out


_VALIDATORS = {
    "client-options-set": _options_set,
    "object-consumer-register": _register,
    "object-producer-register": _register,
    "object-consumer-unregister": _unregister,
    "object-producer-unregister": _unregister,
    "object-patch": _patch,
    "collection-update": _collection_update,
    "collection-applied": _collection_applied,
}


# ---- client frames: one typed definition each, and its builder ----------------------------------
# Every process that talks to the router (the Python client, the worker, the notifier, introspection)
# builds its frames here, so a field's name and presence are decided once. The keys with a dash need
# TypedDict's functional form.

class OptionsSet(TypedDict):
    action: Literal["client-options-set"]
    options: dict[str, Any]


Register = TypedDict("Register", {
    "action": Literal["object-consumer-register", "object-producer-register"],
    "pattern": str,
    "version-known": Version,
    "path": str,
}, total=False)  # (action and pattern always; version-known when the sender holds one; path: a subtree)

Unregister = TypedDict("Unregister", {
    "action": Literal["object-consumer-unregister", "object-producer-unregister"],
    "pattern": str,
})

ObjectPatch = TypedDict("ObjectPatch", {
    "action": Literal["object-patch"],
    "id": str,
    "version-new": Version,
    "version-old": Version,
    "value": Union[dict[str, Any], bool],
    "patch": list[Any],
    "error": str,
}, total=False)  # (action and id always: with nothing else it is a cancel, seapig's "decline")

CollectionUpdate = TypedDict("CollectionUpdate", {
    "action": Literal["collection-update"],
    "id": str,
    "insert": list[dict[str, Any]],
    "remove": list[str],
    "reset": bool,
    "ref": Any,
})

ClientFrame = Union[OptionsSet, Register, Unregister, ObjectPatch, CollectionUpdate]


def options_set(options: dict[str, Any]) -> OptionsSet:
    return {"action": "client-options-set", "options": options}


def consumer_register(pattern: str, known: Version = 0, path: str | None = None) -> Register:
    """``known``: the version this client holds (0: nothing), so the router sends a patch from it;
    ``path``: watch only that subtree (a JSON Pointer, additive)."""
    if path is not None:
        return {"action": "object-consumer-register", "pattern": pattern, "version-known": known, "path": path}
    return {"action": "object-consumer-register", "pattern": pattern, "version-known": known}


def consumer_unregister(pattern: str) -> Unregister:
    return {"action": "object-consumer-unregister", "pattern": pattern}


def producer_register(pattern: str, known: Version = None) -> Register:
    """``known``: the version a master already has (an exact id), announced as seapig's masters do."""
    message: Register = {"action": "object-producer-register", "pattern": pattern}
    if known is not None:
        message["version-known"] = known
    return message


def producer_unregister(pattern: str) -> Unregister:
    return {"action": "object-producer-unregister", "pattern": pattern}


def upload(object_id: str, version: Version, value: dict[str, Any] | bool) -> ObjectPatch:
    """A whole value (a dict), a stall (False) or "this version exists" (True) at ``version``."""
    return {"action": "object-patch", "id": object_id, "version-new": version, "value": value}


def upload_patch(object_id: str, old: Version, new: Version, patch: list[Any]) -> ObjectPatch:
    return {"action": "object-patch", "id": object_id, "version-old": old, "version-new": new, "patch": patch}


def cancel(object_id: str) -> ObjectPatch:
    """Decline an order: the router gives it to another producer (seapig's empty answer)."""
    return {"action": "object-patch", "id": object_id}


def failure(object_id: str, error: str) -> ObjectPatch:
    """A failed production: a cancel that says why (seasync's additive ``error``, shown to watchers)."""
    return {"action": "object-patch", "id": object_id, "error": error}


def collection_update(object_id: str, insert: list[dict[str, Any]] | None = None, remove: list[str] | None = None,
                      reset: bool = False, ref: Any = None) -> CollectionUpdate:
    """A write to a collection; ``ref`` (any small JSON) comes back in the answer to tell writes apart."""
    return {"action": "collection-update", "id": object_id, "insert": list(insert or ()),
            "remove": list(remove or ()), "reset": reset, "ref": ref}


class AnswerError(TypeError, ValueError):
    """A producer's result that cannot be sent; the message says what is wrong, for the producer's author."""


def production_answer(object_id: str, result: Any) -> ObjectPatch:
    """The ``object-patch`` answering an order with a producer's ``(data, version)``; raises AnswerError.

    The one set of rules, used by the worker (worker/production.py) and the Python client, and
    followed by seasync.js (all three tested from tests/unit/common/production_answers.json):
    - ``result`` is a pair, a tuple or a list;
    - ``data`` is a dict (the value), False (a stall: this version has no data) or True (the version
      exists, data unknown); None declines the order (the router gives it to another producer);
    - ``version`` is a version (common/versioning.py; a tuple counts as a list, at any depth), not null (0 means
      "no data") and, as a number, not below 0: versions only grow from 0, a negative one would never
      be newer than what the router holds."""
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise AnswerError(f"produce() must return (data, version), not {_describe(result)}")
    data, version = result
    if data is None:
        return cancel(object_id)
    if not isinstance(data, (dict, bool)):
        raise AnswerError(f"data must be a dict (a JSON object), False (a stall) or True, not {_describe(data)}")
    if isinstance(version, (tuple, list, dict)):
        version = _lists(version)
    try:
        check_version(version)
    except VersionError as exc:
        raise AnswerError(f"bad version {_describe(version)}: {exc}") from None
    if is_null(version) or (isinstance(version, (int, float)) and version < 0):
        raise AnswerError(f"version must be above 0 (0 means 'no data'), not {version!r}")
    return upload(object_id, version, data)


def _lists(version: Any, depth: int = 0) -> Any:
    """``version`` with every tuple in it a list (a tuple counts as a list, at any depth). Past the depth
    check_version allows it stops (that version is refused anyway): no recursion limit to hit."""
    if depth > 17:
        return version
    if isinstance(version, (tuple, list)):
        return [_lists(v, depth + 1) if isinstance(v, (tuple, list, dict)) else v for v in version]
    if isinstance(version, dict):
        return {k: _lists(v, depth + 1) if isinstance(v, (tuple, list, dict)) else v for k, v in version.items()}
    return version


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a producer's result nested thousands deep: the answer must still go out
        text = "(nested too deeply to show)"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(value).__name__} {text}"


# ---- introspection ids ----------------------------------------------------------------------------
# The router's own objects (docs/INTROSPECTION.md): written here once, read by the router, the observer
# and the tests (router/static/viewer.js, a no-build module, spells the ones it shows).

OBJECTS = "SeapigServer::Objects"
CONSUMERS = "SeapigServer::Consumers"
PRODUCERS = "SeapigServer::Producers"
CONNECTIONS = "SeapigServer::Connections"
STATISTICS = "SeapigServer::Statistics"
WORKERS = "SeasyncServer::Workers"
SEASYNC_STATISTICS = "SeasyncServer::Statistics"
INTROSPECTION_IDS = (OBJECTS, CONSUMERS, PRODUCERS, CONNECTIONS, STATISTICS, WORKERS, SEASYNC_STATISTICS)
INTROSPECTION_PREFIXES = ("SeapigServer::", "SeasyncServer::")  # nobody else may upload or produce these


# ---- server frames -------------------------------------------------------------------------------

def update_value(object_id: str, version: Version, value: dict[str, Any]) -> bytes:
    return codec.dumps({"action": "object-update", "id": object_id, "version-old": 0,
                        "version-new": version, "value": value})


def update_patch(object_id: str, old: Version, new: Version, patch: list[Any]) -> bytes:
    return codec.dumps({"action": "object-update", "id": object_id, "version-old": old,
                        "version-new": new, "patch": patch})


def update_subtree_value(object_id: str, path: str, version: Version, value: Any) -> bytes:
    """The subtree at ``path`` as a whole value (additive ``path``: a subtree subscription's update)."""
    return codec.dumps({"action": "object-update", "id": object_id, "path": path, "version-old": 0,
                        "version-new": version, "value": value})


def update_subtree_patch(object_id: str, path: str, old: Version, new: Version, patch: list[Any]) -> bytes:
    return codec.dumps({"action": "object-update", "id": object_id, "path": path, "version-old": old,
                        "version-new": new, "patch": patch})


def produce(object_id: str, inferred: Version, held: list[Version] | None = None) -> bytes:
    """An order; ``held``: versions its watchers hold that the router does not retain (additive
    ``versions-held``: a producer that can rebuild their data answers them as ``bases``)."""
    if held:
        return codec.dumps({"action": "object-produce", "id": object_id, "version-inferred": inferred,
                            "versions-held": held})
    return codec.dumps({"action": "object-produce", "id": object_id, "version-inferred": inferred})


def destroy(object_id: str) -> bytes:
    return codec.dumps({"action": "object-destroy", "id": object_id})


def collection_updated(object_id: str, ref: Any, version: Version) -> bytes:
    """To the writer of a collection update, once it is durable: ``version`` is the first that includes it."""
    return codec.dumps({"action": "collection-updated", "id": object_id, "ref": ref, "version": version})


def collection_apply(object_id: str, ticket: str, message: dict[str, Any]) -> bytes:
    """Router -> worker: apply one checked update to a collection; ``ticket`` is unique across router
    restarts, stored with the update, so a retry of it is applied once."""
    return codec.dumps({"action": "collection-apply", "id": object_id, "ticket": ticket,
                        "insert": message["insert"], "remove": message["remove"], "reset": message["reset"]})


HEARTBEAT = codec.dumps({"action": "heartbeat"})


ECHO_MAX = 256
"""Characters of an offending field echoed in an error frame (an id or pattern up to MAX_ID_LENGTH, a
valid one, comes back whole so that a client can tell which of its objects the error is about)."""
MESSAGE_MAX = 2048  # characters of an error frame's message


def _echo(key: str, value: Any) -> Any:
    """A context field cut to a few hundred characters: an error frame never echoes a huge input back."""
    if not isinstance(value, str):
        return value
    limit = MAX_ID_LENGTH if key in ("id", "pattern") else ECHO_MAX
    if len(value) <= limit:
        return value
    return f"{value[:ECHO_MAX]}...({len(value)} characters)"


def error(message: str, *, code: str, **context: Any) -> bytes:
    """The additive error frame: old clients ignore an action they do not know.

    ``code`` is required: every error frame carries a stable code a program can branch on (the message
    is for humans and may change; docs/PROTOCOL.md §14 lists them all). Every echoed field is cut here,
    in one place (see _echo), and so is the message."""
    if len(message) > MESSAGE_MAX:
        message = f"{message[:MESSAGE_MAX]}...({len(message)} characters)"
    frame: dict[str, Any] = {"action": "error", "code": code, "message": message}
    frame.update({k: _echo(k, v) for k, v in context.items() if v is not None})
    frame.setdefault("request", None)
    return codec.dumps(frame)

