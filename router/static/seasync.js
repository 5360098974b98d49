/**
 * seasync.js: the JavaScript client for seasync (and seapig 0.2) live objects.
 *
 * An ES module with no dependencies and no build step: `import {SeasyncClient} from "/seasync.js"`.
 * Works in browsers and in Node (pass `WebSocket` in the options where there is no global one).
 *
 *     const client = new SeasyncClient("ws://127.0.0.1:3001", {name: "dashboard"});
 *     const cars = client.consume("cars");              // one object
 *     cars.onchange((obj) => render(obj.value, obj.version));
 *     const family = client.consume("car-*");           // a wildcard: family.children is a Map id -> consumer
 *     family.onchange((child, change) => change.destroyed ? drop(child.id) : render(child.id, child.value));
 *
 *     const status = client.master("status", {value: {up: true}});   // keep it current...
 *     status.value.load = 0.3; status.bump();                       // ...uploads a patch (or the value)
 *     client.master("car-*", {produce: async (id, versionInferred) => [await load(id), [Date.now(), 0]]});
 *
 *     const todos = client.collection("todos/list");    // a writable collection (a Collection producer)
 *     todos.onChange((id, item, old) => item === null ? unrender(id) : render(item));
 *     const version = await todos.update({insert: [{id: "t1", text: "milk"}], remove: ["t0"]});
 *     // rejects with a CollectionError (.code); "outcome-unknown" if the link dropped first (never resent)
 *
 * Offline: `new SeasyncClient(url, {persist: "dashboard"})` keeps the last value and version of every consumed
 * id and every keep-current master in localStorage; a page reloaded while the server is down shows the last
 * state at once (`consumer.stale` true until the server confirmed it), then catches up with a patch.
 *
 * The protocol rules are the same as the Python client's pure core (common/client/state.py), checked by one
 * table of scenarios run against both (tests/fixtures/client_scenarios.json).
 *
 * What it does for you: reconnects (1 s, doubling up to 5 s), re-registers every consumer with the
 * version it holds and every master with its version, so the server sends only what changed; applies
 * RFC 6902 patches atomically (a patch that fails leaves the object untouched and asks for a resync); never
 * applies a patch whose base (`version-old`) is not the version it holds (it re-registers to resync).
 * The wire protocol is described in docs/PROTOCOL.md.
 */

// ============================================================================ JSON Patch (RFC 6902)

/** A patch that cannot be applied (bad operation, missing path, failed test). */
/** The router's introspection objects (the same ids as common/protocol.py, checked by a test). */
export const INTROSPECTION = Object.freeze({
  OBJECTS: "SeapigServer::Objects",
  CONSUMERS: "SeapigServer::Consumers",
  PRODUCERS: "SeapigServer::Producers",
  CONNECTIONS: "SeapigServer::Connections",
  STATISTICS: "SeapigServer::Statistics",
  WORKERS: "SeasyncServer::Workers",
  SEASYNC_STATISTICS: "SeasyncServer::Statistics",
});

export class PatchError extends Error {
  constructor(message) {
    super(message);
    this.name = "PatchError";
  }
}

const hasOwn = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

/** True for a JSON object (not null, not an array). */
export function isObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Deep equality of JSON values (object keys in any order). */
export function deepEqual(a, b) {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  for (const key of keys) if (!hasOwn(b, key) || !deepEqual(a[key], b[key])) return false;
  return true;
}

/** A deep copy of a JSON value. */
function cloneJSON(value) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map(cloneJSON);
  const out = {};
  for (const key of Object.keys(value)) setKey(out, key, cloneJSON(value[key]));
  return out;
}

/** obj[key] = value, also for a key named "__proto__" (which must stay a plain data key). */
function setKey(obj, key, value) {
  if (key === "__proto__") {
    Object.defineProperty(obj, key, {value, writable: true, enumerable: true, configurable: true});
  } else {
    obj[key] = value;
  }
}

/** RFC 6901: "/a~1b/0" -> ["a/b", "0"]. */
export function parsePointer(path) {
  if (typeof path !== "string") throw new PatchError(`a path must be a string, not ${typeof path}`);
  if (path === "") return [];
  if (path[0] !== "/") throw new PatchError(`invalid JSON Pointer ${JSON.stringify(path)}`);
  return path.slice(1).split("/").map((token) => {
    if (/~(?![01])/.test(token)) throw new PatchError(`invalid escape in JSON Pointer ${JSON.stringify(path)}`);
    return token.replace(/~1/g, "/").replace(/~0/g, "~");
  });
}

/** RFC 6901 escaping of one key: "a/b~" -> "a~1b~0". */
export function escapePointerToken(key) {
  return String(key).replace(/~/g, "~0").replace(/\//g, "~1");
}

function arrayIndex(array, token, forAdd) {
  if (forAdd && token === "-") return array.length;
  if (!/^(0|[1-9][0-9]*)$/.test(token)) throw new PatchError(`${JSON.stringify(token)} is not an array index`);
  const index = Number(token);
  if (index > array.length || (!forAdd && index === array.length)) {
    throw new PatchError(`array index ${index} is out of range (length ${array.length})`);
  }
  return index;
}

function childOf(node, token, path) {
  if (Array.isArray(node)) return node[arrayIndex(node, token, false)];
  if (isObject(node) && hasOwn(node, token)) return node[token];
  throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
}

function valueAt(root, tokens, path) {
  let node = root;
  for (const token of tokens) node = childOf(node, token, path);
  return node;
}

/**
 * Apply an RFC 6902 patch (add, remove, replace, move, copy, test) and return the new document.
 *
 * All or nothing: `doc` is never modified. Containers on the paths the patch touches are copied (once per
 * patch), everything else is shared with `doc`; so a failure (a PatchError) leaves no half-applied object,
 * and unchanged subtrees keep their identity (handy for rendering). An empty patch returns `doc` itself.
 */
export function applyPatch(doc, patch) {
  if (!Array.isArray(patch)) throw new PatchError("a patch must be an array of operations");
  let root = doc;
  const mine = new WeakSet(); // containers copied during this patch: safe to modify in place
  const own = (node) => {
    if (mine.has(node)) return node;
    const copy = Array.isArray(node) ? node.slice() : {...node};
    mine.add(copy);
    return copy;
  };
  // The parent container of the last token, copied (with its ancestors) so that it may be modified.
  const parentOf = (tokens, path) => {
    if (root === null || typeof root !== "object") throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
    root = own(root);
    let node = root;
    for (let i = 0; i < tokens.length - 1; i++) {
      const child = childOf(node, tokens[i], path);
      if (child === null || typeof child !== "object") throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
      const copy = own(child);
      if (copy !== child) {
        if (Array.isArray(node)) node[Number(tokens[i])] = copy;
        else setKey(node, tokens[i], copy);
      }
      node = copy;
    }
    return node;
  };
  const add = (tokens, path, value) => {
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const parent = parentOf(tokens, path);
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent)) parent.splice(arrayIndex(parent, last, true), 0, value);
    else setKey(parent, last, value);
  };
  const remove = (tokens, path) => {
    if (tokens.length === 0) throw new PatchError("cannot remove the whole document");
    const parent = parentOf(tokens, path);
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, last, false), 1)[0];
    if (!hasOwn(parent, last)) throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
    const value = parent[last];
    delete parent[last];
    return value;
  };
  const replace = (tokens, path, value) => {
    if (tokens.length === 0) {
      root = value;
      return;
    }
    const parent = parentOf(tokens, path);
    const last = tokens[tokens.length - 1];
    if (Array.isArray(parent)) parent[arrayIndex(parent, last, false)] = value;
    else if (hasOwn(parent, last)) setKey(parent, last, value);
    else throw new PatchError(`path ${JSON.stringify(path)} does not exist`);
  };

  patch.forEach((op, n) => {
    if (!isObject(op)) throw new PatchError(`operation ${n} is not an object`);
    const path = op.path;
    const tokens = parsePointer(path);
    const needValue = () => {
      if (!hasOwn(op, "value")) throw new PatchError(`operation ${n} (${op.op}) has no value`);
      return op.value;
    };
    const from = () => {
      const tokensFrom = parsePointer(op.from);
      return [tokensFrom, valueAt(root, tokensFrom, op.from)];
    };
    switch (op.op) {
      case "add":
        add(tokens, path, needValue());
        break;
      case "remove":
        remove(tokens, path);
        break;
      case "replace":
        replace(tokens, path, needValue());
        break;
      case "move": {
        const [tokensFrom] = from();
        if (op.from === path) break;
        if (path.startsWith(op.from + "/")) throw new PatchError(`cannot move ${op.from} into itself`);
        add(tokens, path, remove(tokensFrom, op.from));
        break;
      }
      case "copy":
        add(tokens, path, cloneJSON(from()[1]));
        break;
      case "test":
        if (!deepEqual(valueAt(root, tokens, path), needValue())) {
          throw new PatchError(`test failed at ${JSON.stringify(path)}`);
        }
        break;
      default:
        throw new PatchError(`unknown operation ${JSON.stringify(op.op)}`);
    }
  });
  return root;
}

/**
 * An RFC 6902 patch turning `a` into `b` (add, remove and replace only, keys escaped).
 * Objects are compared key by key, arrays index by index (then trailing removes or adds).
 */
export function makePatch(a, b, path = "", out = []) {
  if (a === b) return out;
  if (isObject(a) && isObject(b)) {
    for (const key of Object.keys(b)) {
      const sub = `${path}/${escapePointerToken(key)}`;
      if (hasOwn(a, key)) makePatch(a[key], b[key], sub, out);
      else out.push({op: "add", path: sub, value: b[key]});
    }
    for (const key of Object.keys(a)) {
      if (!hasOwn(b, key)) out.push({op: "remove", path: `${path}/${escapePointerToken(key)}`});
    }
  } else if (Array.isArray(a) && Array.isArray(b)) {
    const common = Math.min(a.length, b.length);
    for (let i = 0; i < common; i++) makePatch(a[i], b[i], `${path}/${i}`, out);
    for (let i = a.length - 1; i >= b.length; i--) out.push({op: "remove", path: `${path}/${i}`});
    for (let i = a.length; i < b.length; i++) out.push({op: "add", path: `${path}/${i}`, value: b[i]});
  } else if (!deepEqual(a, b)) {
    out.push({op: "replace", path, value: b});
  }
  return out;
}

// ============================================================================ versions and patterns

/** True for "no version": 0, null or undefined. */
export function isNullVersion(version) {
  return version === null || version === undefined || version === 0;
}

/** Version equality: deep, numbers by value. */
export function sameVersion(a, b) {
  if (isNullVersion(a) && isNullVersion(b)) return true;
  return deepEqual(a, b);
}

const TIMESTAMP_MS = 1e11; // a first version element this large is a time in ms, as the default [Date.now(), 0]

/**
 * The version after `version` for `bump()`: [a, b] -> [a, b + 1], n -> n + 1; others need an explicit one.
 * With `nowMs`, a [timestamp_ms, n] version older than `nowMs` becomes [nowMs, 0], so a change made offline is
 * newer than what other masters uploaded before it was made (the newer version wins on reconnect).
 */
export function nextVersion(version, nowMs = null) {
  if (typeof version === "number" && Number.isFinite(version)) return version + 1;
  if (nowMs !== null && Array.isArray(version) && version.length === 2 && Number.isInteger(version[0]) &&
      version[0] >= TIMESTAMP_MS && version[0] < nowMs) {
    return [nowMs, 0];
  }
  if (Array.isArray(version) && version.length && typeof version[version.length - 1] === "number") {
    return [...version.slice(0, -1), version[version.length - 1] + 1];
  }
  throw new TypeError(`cannot bump version ${JSON.stringify(version)} automatically; pass bump(version)`);
}

/** The wait before reconnect attempt `attempt` (0 = the first): doubling from `base` up to `maximum`. */
export function backoff(attempt, base, maximum) {
  return Math.min(base * 2 ** Math.min(Math.max(attempt, 0), 30), Math.max(maximum, base));
}

// A connection that stayed open this long (ms) resets the reconnect backoff; one dropped at once keeps growing it.
const STABLE_CONNECTION = 10000;

// After the handshake the client unregisters a pattern it never registered: the server's error answer comes
// after everything it had to send for the registrations before it, which confirms the data held (`stale`).
const SYNC_PREFIX = "seasync-sync-probe:";

const patternCache = new Map();

/** True if `id` is covered by `pattern`: equality, or a whole-id match where each `*` is any run of characters. */
export function matches(pattern, id) {
  if (!pattern.includes("*")) return pattern === id;
  let regex = patternCache.get(pattern);
  if (regex === undefined) {
    const body = pattern.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("[\\s\\S]*");
    regex = new RegExp(`^${body}$`);
    if (patternCache.size > 1000) patternCache.clear();
    patternCache.set(pattern, regex);
  }
  return regex.test(id);
}

const isWildcard = (pattern) => pattern.includes("*");

function checkPattern(pattern) {
  if (typeof pattern !== "string" || pattern === "") throw new TypeError("an id or pattern must be a non-empty string");
}

// Registering an exact id with a version the server cannot hold makes it send the full value: the way to
// resynchronise an object whose data turned out wrong, without unregistering (which could destroy it).
const RESYNC_VERSION = [-1, -1];

// ============================================================================ callbacks

class Callbacks {
  constructor(logger) {
    this.items = [];
    this.logger = logger;
  }

  add(callback) {
    if (typeof callback !== "function") throw new TypeError("a callback must be a function");
    this.items.push(callback);
    return () => {
      const index = this.items.indexOf(callback);
      if (index >= 0) this.items.splice(index, 1);
    };
  }

  fire(...args) {
    for (const callback of this.items.slice()) {
      try {
        const result = callback(...args);
        if (result && typeof result.catch === "function") {
          result.catch((error) => this.logger.error("seasync: async callback failed", error));
        }
      } catch (error) {
        this.logger.error("seasync: callback failed", error);
      }
    }
  }
}

/** A promise for the first time `check()` returns something other than undefined, re-checked on `subscribe`. */
function waitFor(subscribe, check, timeoutMs, describe) {
  return new Promise((resolve, reject) => {
    let timer = null;
    const unsubscribes = [];
    const finish = (fn, arg) => {
      unsubscribes.forEach((unsubscribe) => unsubscribe());
      if (timer !== null) clearTimeout(timer);
      fn(arg);
    };
    const test = () => {
      try {
        const result = check();
        if (result !== undefined) finish(resolve, result);
      } catch (error) {
        finish(reject, error);
      }
    };
    subscribe(test, unsubscribes);
    if (timeoutMs != null) {
      timer = setTimeout(() => finish(reject, new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`)), timeoutMs);
    }
    test();
  });
}

// ============================================================================ consumers

/**
 * One object id as this client sees it: made by `client.consume(id)`, or a wildcard's child.
 *
 * Read-only fields: `id`, `value` (the data, or null before any), `version`, `valid` (connected and holding
 * data the server considers current), `destroyed` (unlinked, or dropped by the server), `receivedAt`
 * (Date.now() of the last update), `lastPatch` (the patch of the last update, null for a full value),
 * `error` (the last production error the server reported for this id, cleared by the next update), `stale`
 * (true while the data held, persisted or from before a drop, is not confirmed by the server since the link came up).
 * `value` is replaced by a new object on every update (unchanged parts are shared): do not modify it.
 */
export class Consumer {
  constructor(client, id) {
    this.client = client;
    this.id = id;
    this.value = null;
    this.version = null;
    this.valid = false;
    this.destroyed = false;
    this.receivedAt = null;
    this.lastPatch = null;
    this.error = null;
    this._path = null; // consume(id, {path}): the JSON Pointer watched (read it as `path`)
    this._box = null; // ... and the subtree held, boxed: {value: subtree}
    this._confirmed = false; // the server confirmed or updated it since the link came up
    this._probe = 0; // the sync probe whose answer confirms it
    this._exact = false; // the user consumes this id directly
    this._tempExact = false; // registered directly only to resync a wildcard child
    this._resyncing = false;
    this._parents = new Set();
    this._change = new Callbacks(client.logger);
    this._status = new Callbacks(client.logger);
    this._destroy = new Callbacks(client.logger);
  }

  /** True once data arrived (or was pre-seeded). */
  get initialized() {
    return this.value !== null;
  }

  /** True while the data held (persisted, or from before a drop) is not confirmed by the server since the link came up. */
  get stale() {
    return !this.destroyed && this.value !== null && !(this.client.connected && this._confirmed);
  }

  /** `cb(consumer, {patch, version})` on every new version. Returns a function that removes the callback. */
  onchange(callback) {
    return this._change.add(callback);
  }

  /** `cb(consumer)` when `valid`, `destroyed` or `error` changes. Returns a function that removes the callback. */
  onstatuschange(callback) {
    return this._status.add(callback);
  }

  /** `cb(consumer)` once, when the consumer is unlinked or the server destroys it (wildcard children). */
  ondestroy(callback) {
    return this._destroy.add(callback);
  }

  /** Resolves with `value` once valid and `predicate(value)` is true; rejects after `timeoutMs` or on destroy. */
  wait(predicate = null, timeoutMs = null) {
    return waitFor(
      (test, unsubscribes) => unsubscribes.push(this.onchange(test), this.onstatuschange(test)),
      () => {
        if (this.destroyed) throw new Error(`consumer ${this.id} was destroyed while waiting`);
        if (this.valid && this.value !== null && (!predicate || predicate(this.value))) return this.value;
        return undefined;
      },
      timeoutMs,
      () => `${this.id} (valid=${this.valid}, version=${JSON.stringify(this.version)})`,
    );
  }

  _setValid(valid) {
    const stale = this.stale;
    if (valid !== this.valid || stale !== this._lastStale) {
      this.valid = valid;
      this._lastStale = stale;
      this._status.fire(this);
    }
  }

  _setError(error) {
    if (error !== this.error) {
      this.error = error;
      this._status.fire(this);
    }
  }

  /** The JSON Pointer this consumer watches (`consume(id, {path})`), or null for the whole object. */
  get path() {
    return this._path;
  }

  _update(value, version, patch) {
    this.value = value;
    this.version = version;
    this.lastPatch = patch;
    this.receivedAt = Date.now();
    this._resyncing = false;
    this._confirmed = this.client.connected;
    this._probe = 0;
    if (this.error !== null) this._setError(null);
    this._setValid(this.client.connected);
    this.client._persistConsumer(this);
    const change = {id: this.id, version, patch, destroyed: false};
    this._change.fire(this, change);
    for (const parent of this._parents) parent._childChanged(this, change);
  }

  _destroyed() {
    if (this.destroyed) return;
    this.destroyed = true;
    this.valid = false;
    this._status.fire(this);
    this._destroy.fire(this);
  }
}

/**
 * Every object whose id matches a `*` pattern: made by `client.consume("car-*")`.
 *
 * `children` is a Map id -> Consumer (added when an object's first data arrives, removed when the server
 * destroys it); `value` is `{id: data}` of the children that have data. `valid` is true while connected.
 * A child that vanished while the client was disconnected is not announced by the protocol: it stays, invalid.
 */
export class WildcardConsumer {
  constructor(client, pattern) {
    this.client = client;
    this.pattern = pattern;
    this.children = new Map();
    this.destroyed = false;
    this._change = new Callbacks(client.logger);
    this._status = new Callbacks(client.logger);
    this._destroy = new Callbacks(client.logger);
  }

  get id() {
    return this.pattern;
  }

  get valid() {
    return this.client.connected && !this.destroyed;
  }

  /** `{id: value}` of every child that has data, ids sorted. */
  get value() {
    const out = {};
    for (const id of [...this.children.keys()].sort()) {
      const child = this.children.get(id);
      if (child.value !== null) setKey(out, id, child.value);
    }
    return out;
  }

  /** `cb(child, {id, version, patch, destroyed})` when any child changes, appears or is destroyed. */
  onchange(callback) {
    return this._change.add(callback);
  }

  /** `cb(wildcardConsumer)` when `valid` changes (connect, disconnect) or it is destroyed. */
  onstatuschange(callback) {
    return this._status.add(callback);
  }

  /** `cb(wildcardConsumer)` once, when it is unlinked. */
  ondestroy(callback) {
    return this._destroy.add(callback);
  }

  /** Resolves with `value` once `predicate(value)` is true (or, without one, once some child has data). */
  wait(predicate = null, timeoutMs = null) {
    return waitFor(
      (test, unsubscribes) => unsubscribes.push(this.onchange(test), this.onstatuschange(test)),
      () => {
        if (this.destroyed) throw new Error(`wildcard consumer ${this.pattern} was destroyed while waiting`);
        const value = this.value;
        if (predicate ? predicate(value) : Object.keys(value).length > 0) return value;
        return undefined;
      },
      timeoutMs,
      () => `children of ${this.pattern} (${[...this.children.keys()].join(", ")})`,
    );
  }

  _adopt(child) {
    if (!this.children.has(child.id)) {
      this.children.set(child.id, child);
      child._parents.add(this);
    }
  }

  _childChanged(child, change) {
    this._change.fire(child, change);
  }

  _drop(child) {
    if (!this.children.delete(child.id)) return;
    child._parents.delete(this);
    this._change.fire(child, {id: child.id, version: child.version, patch: null, destroyed: true});
  }
}

// ============================================================================ masters

/**
 * An object this client provides: made by `client.master(...)`. Two modes, not to be mixed. A keep-current
 * master bumped while offline keeps its change (`pending`, persisted with `persist`) and uploads it on the next
 * connect; the newer version wins at the server.
 *
 * - keep current (`value` given, exact id): modify `value`, then `bump()` (or `set(newValue)`); the new
 *   version is uploaded as a patch against the last upload when that is smaller, else as the full value.
 *   When the server asks for the object (someone consumes it, or after a reconnect) the last bumped value
 *   is uploaded by itself. Edits not yet bumped are never sent.
 * - produce on demand (`produce` given, exact id or wildcard): `produce(id, versionInferred)` returns
 *   `[data, version]` or a Promise of it; data is an object, `false` (a stall), `true` (exists) or null
 *   (decline: the server gives the order to someone else). If it throws, the server is told (`error`).
 */
export class Master {
  constructor(client, pattern, value, version, produce) {
    this.client = client;
    this.pattern = pattern;
    this.value = value;
    this.version = version;
    this.produce = produce;
    this.versions = new Map(); // produce mode: last version produced per id
    this.closed = false;
    this.lastUpload = null; // "patch" or "value": how the last bump went out
    this._shadow = produce ? null : JSON.parse(JSON.stringify(value)); // the data of this.version
    this._serverBase = null; // the version the server last got from us, as a patch base
    this._lastWasPatch = false;
    this._wanted = true; // false after object-destroy: nobody consumes it, bumps are not uploaded
    this.pending = false; // bumped while offline: uploaded on the next connect (the newer version wins)
  }

  get id() {
    return this.pattern;
  }

  /** Make a new version of `value` and upload it (if connected and wanted); returns the new version. */
  bump(version = undefined) {
    this._checkKeepCurrent();
    const newVersion = version === undefined ? nextVersion(this.version, Date.now()) : version;
    if (isNullVersion(newVersion)) throw new TypeError("a master's version cannot be 0 or null");
    const raw = JSON.stringify(this.value);
    const snapshot = JSON.parse(raw);
    const oldShadow = this._shadow;
    const oldVersion = this.version;
    this._shadow = snapshot;
    this.version = newVersion;
    if (!this.client.connected || this.closed) {
      this.pending = true;
      this.client._persistMaster(this);
      return newVersion;
    }
    this.client._persistMaster(this);
    if (!this._wanted) return newVersion;
    const message = {action: "object-patch", id: this.pattern, "version-new": newVersion};
    this._lastWasPatch = false;
    if (oldShadow !== null && this._serverBase !== null && sameVersion(this._serverBase, oldVersion)) {
      const patch = makePatch(oldShadow, snapshot);
      if (JSON.stringify(patch).length < raw.length) {
        message["version-old"] = oldVersion;
        message.patch = patch;
        this._lastWasPatch = true;
      }
    }
    if (!this._lastWasPatch) message.value = snapshot;
    this.lastUpload = this._lastWasPatch ? "patch" : "value";
    this._serverBase = newVersion;
    this.pending = false;
    this.client._send(message);
    return newVersion;
  }

  /** Replace `value` and `bump()`; returns the new version. */
  set(value, version = undefined) {
    this._checkKeepCurrent();
    if (!isObject(value)) throw new TypeError("a master's value must be an object");
    this.value = value;
    return this.bump(version);
  }

  _checkKeepCurrent() {
    if (this.produce) throw new Error(`master ${this.pattern} produces on demand; bump()/set() are for value masters`);
  }

  _registration() {
    let known = 0;
    if (!this.produce) known = this.version;
    else if (!isWildcard(this.pattern)) known = this.versions.get(this.pattern) ?? 0;
    return {action: "object-producer-register", pattern: this.pattern, "version-known": known};
  }

  _uploadCurrent() {
    this.client._send(this._uploadValue());
  }

  /** The full last-bumped value (an order in keep-current mode, a refused patch, a change made offline). */
  _uploadValue() {
    this._wanted = true;
    this.pending = false;
    this._lastWasPatch = false;
    this.lastUpload = "value";
    this._serverBase = this.version;
    return {action: "object-patch", id: this.pattern, "version-new": this.version, value: this._shadow};
  }

  _destroyedId(id) {
    if (this.produce) {
      this.versions.delete(id);
    } else {
      this._wanted = false;
      this._serverBase = null;
    }
  }
}

const MAX_ID_LENGTH = 1024; // common/patterns.py
const MAX_VERSION_DEPTH = 16; // common/versioning.py

/** Why `value` is not a version (the rules of common/versioning.py check_version), or null if it is one. */
export function versionProblem(value, depth = 0) {
  if (depth > MAX_VERSION_DEPTH) return "version is nested too deeply";
  if (value === null || value === undefined) return null;
  if (typeof value === "number") return Number.isFinite(value) ? null : "a version number must be finite";
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item === null || item === undefined || isObject(item)) return "a list version holds numbers (or lists of numbers) only";
      const problem = versionProblem(item, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  if (isObject(value)) {
    for (const [key, item] of Object.entries(value)) {
      if (key === "" || key.length > MAX_ID_LENGTH || key.includes("*")) {
        return `a dependency hash maps object ids to versions: key ${JSON.stringify(key).slice(0, 80)} is not an id`;
      }
      const problem = versionProblem(item, depth + 1);
      if (problem) return problem;
    }
    return null;
  }
  return `a version must be a number, a list or a hash, not ${typeof value}`;
}

/** True if `version` is a valid version (see versionProblem). */
export function isVersion(version) {
  return versionProblem(version) === null;
}

/**
 * The object-patch answering a production with `[data, version]`; throws TypeError if the result is bad.
 * The rules are common/protocol.py production_answer's (one table tests both: tests/unit/common/production_answers.json):
 * data an object (the value), false (a stall) or true (the version exists); null declines the order; the version
 * a version, not null/0, and not a negative number.
 */
export function productionMessage(id, result) {
  if (!Array.isArray(result) || result.length !== 2) throw new TypeError("produce must return [data, version]");
  const [data, version] = result;
  if (data === null || data === undefined) return {action: "object-patch", id};
  if (typeof data !== "boolean" && !isObject(data)) {
    throw new TypeError("produced data must be an object, false (stall) or true");
  }
  const problem = versionProblem(version);
  if (problem) throw new TypeError(`bad version ${String(JSON.stringify(version)).slice(0, 80)}: ${problem}`);
  if (isNullVersion(version) || (typeof version === "number" && version < 0)) {
    throw new TypeError(`produced version must be above 0 (0 means 'no data'), not ${JSON.stringify(version)}`);
  }
  return {action: "object-patch", id, "version-new": version, value: data};
}

// ============================================================================ writable collections

/**
 * Per-item changes between two values of a collection (`{itemId: item}`), as common/collection.py `changes`:
 * `[id, new, old]` triples, removals first (`new` null), then inserts (`old` null) and replacements in the new
 * value's order. Items equal in both are not changes.
 */
export function collectionChanges(oldValue, newValue) {
  const before = isObject(oldValue) ? oldValue : {};
  const after = isObject(newValue) ? newValue : {};
  const out = [];
  for (const [id, item] of Object.entries(before)) {
    if (!hasOwn(after, id)) out.push([id, null, item]);
  }
  for (const [id, item] of Object.entries(after)) {
    const old = hasOwn(before, id) ? before[id] : null;
    if (old === null || !deepEqual(old, item)) out.push([id, item, old]);
  }
  return out;
}

/** A collection update that did not apply (`code`: the server's code), or whose outcome is unknown (`outcome-unknown`). */
export class CollectionError extends Error {
  constructor(message, code) {
    super(message);
    this.name = "CollectionError";
    this.code = code;
  }
}

const MAX_UPDATE_ITEMS = 10000; // common/collection.py

/** The checks of common/collection.py `check_update`, made before sending (same codes as the server's). */
function checkUpdate(insert, remove, reset) {
  if (!Array.isArray(insert)) throw new CollectionError("'insert' must be a list of items", "invalid-update");
  if (!Array.isArray(remove)) throw new CollectionError("'remove' must be a list of item ids", "invalid-update");
  if (typeof reset !== "boolean") throw new CollectionError("'reset' must be true or false", "invalid-update");
  if (insert.length + remove.length > MAX_UPDATE_ITEMS) {
    throw new CollectionError(`an update holds at most ${MAX_UPDATE_ITEMS} items and ids in all: split it`, "update-too-large");
  }
  const checkId = (id, where) => {
    if (typeof id !== "string" || !id || id.length > MAX_ID_LENGTH) {
      throw new CollectionError(`${where} must be a string of 1 to ${MAX_ID_LENGTH} characters (the item's id)`, "invalid-item");
    }
  };
  insert.forEach((item, index) => {
    if (!isObject(item)) throw new CollectionError(`insert[${index}] must be a JSON object`, "invalid-item");
    checkId(item.id, `insert[${index}].id`);
  });
  remove.forEach((id, index) => checkId(id, `remove[${index}]`));
}

/**
 * A writable collection (issue 15), made by `client.collection(id)`: a consumer of the object (`consumer`)
 * plus writes. Its value is `{itemId: item}`, every item an object with a string `id`.
 */
export class Collection {
  constructor(client, consumer) {
    this.client = client;
    this.consumer = consumer;
    this.id = consumer.id;
    this._changes = new Callbacks(client.logger);
    this._seen = consumer.value ?? {}; // the value as last reported (a consumer's value is replaced, never mutated)
    consumer.onchange((entry) => {
      const before = this._seen;
      this._seen = entry.value ?? {};
      for (const [id, item, old] of collectionChanges(before, this._seen)) this._changes.fire(id, item, old);
    });
  }

  get version() { return this.consumer.version; }
  get valid() { return this.consumer.valid; }
  get _value() { return isObject(this.consumer.value) ? this.consumer.value : {}; }
  /** The item with this id, or undefined. */
  get(id) { return hasOwn(this._value, id) ? this._value[id] : undefined; }
  has(id) { return hasOwn(this._value, id); }
  get size() { return Object.keys(this._value).length; }
  /** The items held, in the collection's order. */
  items() { return Object.values(this._value); }
  ids() { return Object.keys(this._value); }
  /** Resolves with the value once valid (and `predicate(value)`), as `Consumer.wait`. */
  wait(predicate = null, timeoutMs = null) { return this.consumer.wait(predicate, timeoutMs); }

  /** `cb(id, item, old)` per item changed by each new version: `item` null = removed, `old` null = inserted. */
  onChange(callback) {
    return this._changes.add(callback);
  }

  /**
   * Write: `remove` (ids) first, then `insert` (items; one whose id is held replaces it); `reset` clears the
   * collection first (`remove` is then ignored). All of it applies or nothing. Resolves with the version that
   * first includes the write; rejects with a CollectionError (`code`) when refused, or `code` "outcome-unknown"
   * when the connection drops (or `timeoutMs` passes) after sending: it is never resent. While disconnected it
   * waits for the connection up to `timeoutMs` (then rejects with code "not-connected": nothing was sent).
   */
  update({insert = [], remove = [], reset = false} = {}, {timeoutMs = 30000} = {}) {
    const client = this.client;
    return new Promise((resolve, reject) => {
      if (client.closed) return reject(new CollectionError("this client was closed", "closed"));
      try {
        checkUpdate(insert, remove, reset);
      } catch (error) {
        return reject(error);
      }
      const deadline = timeoutMs == null ? null : Date.now() + timeoutMs;
      let timer = null;
      let unsubscribe = null;
      const send = () => {
        if (unsubscribe) unsubscribe();
        clearTimeout(timer);
        const ref = ++client._refs;
        const done = (fn, arg) => {
          clearTimeout(timer);
          client._writes.delete(ref);
          fn(arg);
        };
        client._writes.set(ref, {id: this.id, resolve: (v) => done(resolve, v), reject: (e) => done(reject, e)});
        client._send({action: "collection-update", id: this.id, insert, remove, reset, ref});
        if (deadline !== null) {
          timer = setTimeout(() => done(reject, new CollectionError(
            `no answer to the update of ${this.id} within ${timeoutMs} ms: it may or may not have applied`,
            "outcome-unknown")), Math.max(deadline - Date.now(), 0));
        }
      };
      if (client.connected) return send();
      const giveUp = (error) => {
        unsubscribe();
        clearTimeout(timer);
        reject(error);
      };
      const stopConnection = client.onconnectionchange((up) => { if (up && !client.closed) send(); });
      client._waiting.add(giveUp);
      unsubscribe = () => {
        stopConnection();
        client._waiting.delete(giveUp);
      };
      if (deadline !== null) {
        timer = setTimeout(() => giveUp(new CollectionError(
          `not connected within ${timeoutMs} ms: the update of ${this.id} was not sent`, "not-connected")), timeoutMs);
      }
    });
  }
}

// ============================================================================ the client

const OPEN = 1;

/**
 * One connection to a seasync front (or a seapig server), with reconnection and resync built in.
 *
 * Options: `name` (shown in introspection as `name:N`), `options` (more client options sent to the server),
 * `reconnectDelay` (ms, default 1000; doubled after each failed attempt up to `maxReconnectDelay`, default 5000;
 * the count restarts after a connection that stayed open 10 s), `persist` (a name: keep the last state of every
 * consumed id and keep-current master in `storage`, default localStorage, under `seasync:<name>`),
 * `heartbeat` (default true: ask for heartbeat frames and, once they flow, treat `deadAfter` ms of silence,
 * default 25000, as a dead connection), `WebSocket` (constructor, default the global one), `logger`
 * (default console), `connect` (default true: connect at once; else call `connect()`).
 */
export class SeasyncClient {
  constructor(url, opts = {}) {
    this.url = url;
    this.name = opts.name ?? "browser";
    this.options = {...(opts.options || {})};
    this.reconnectDelay = opts.reconnectDelay ?? 1000;
    this.maxReconnectDelay = Math.max(opts.maxReconnectDelay ?? 5000, this.reconnectDelay);
    this.heartbeat = opts.heartbeat ?? true;
    this.deadAfter = opts.deadAfter ?? 25000;
    this.logger = opts.logger ?? console;
    this.WebSocket = opts.WebSocket ?? globalThis.WebSocket;
    this.connected = false;
    this.closed = false;
    this.connections = 0; // how many times a connection opened
    this._entries = new Map(); // id -> Consumer (exact ones and wildcard children)
    this._wildcards = new Map(); // pattern -> WildcardConsumer
    this._masters = new Map(); // pattern -> Master
    this._collections = new Map(); // id -> Collection
    this._writes = new Map(); // ref -> {id, resolve, reject}: collection updates sent on this link
    this._refs = 0;
    this._waiting = new Set(); // give-up functions of collection updates waiting for a connection
    this._ws = null;
    this._generation = 0; // bumped for every socket: events of an old socket are ignored
    this._attempt = 0; // reconnect attempts since the last stable connection
    this._openedAt = 0;
    this._probes = 0;
    this._retryTimer = null;
    this._watchdog = null;
    this._lastFrameAt = 0;
    this._heartbeatSeen = false;
    this._error = new Callbacks(this.logger);
    this._connection = new Callbacks(this.logger);
    this._persistKey = opts.persist ? `seasync:${opts.persist}` : null;
    this._storage = opts.storage ?? globalThis.localStorage ?? null;
    this._saved = this._loadState();
    this._saveTimer = null;
    if (this._persistKey !== null) {
      // a reload within the batching delay must not lose the last update
      this._onPageHide = () => { if (this._saveTimer !== null) this._saveNow(); };
      globalThis.addEventListener?.("pagehide", this._onPageHide);
    }
    if (opts.connect ?? true) this.connect();
  }

  // ---------------------------------------------------------------- persisted state

  /** `{consumers: {id: [version, value]}, masters: {id: [version, value, pending]}}` from storage, or empty. */
  _loadState() {
    const empty = {consumers: {}, masters: {}};
    if (this._persistKey === null || !this._storage) return empty;
    try {
      const raw = this._storage.getItem(this._persistKey);
      if (raw === null) return empty;
      const state = JSON.parse(raw);
      if (!isObject(state) || !isObject(state.consumers) || !isObject(state.masters)) throw new TypeError("not a client state");
      return state;
    } catch (error) {
      this.logger.warn(`seasync: the persisted state ${this._persistKey} is unusable; starting empty`, error);
      return empty;
    }
  }

  _persistConsumer(entry) {
    if (this._persistKey === null || !entry._exact || entry.value === null || entry._path !== null) return;
    this._saved.consumers[entry.id] = [entry.version, entry.value];
    this._scheduleSave();
  }

  _persistMaster(master) {
    if (this._persistKey === null || master.produce || master.closed) return;
    this._saved.masters[master.pattern] = [master.version, master._shadow, master.pending];
    this._scheduleSave();
  }

  _forgetSaved(kind, id) {
    if (this._persistKey === null || !(id in this._saved[kind])) return;
    delete this._saved[kind][id];
    this._scheduleSave();
  }

  /** Writes are batched: one write of the whole state at most every 100 ms. */
  _scheduleSave() {
    if (this._saveTimer !== null) return;
    this._saveTimer = setTimeout(() => this._saveNow(), 100);
  }

  _saveNow() {
    clearTimeout(this._saveTimer);
    this._saveTimer = null;
    if (this._persistKey === null || !this._storage) return;
    for (const master of this._masters.values()) {
      if (!master.produce && !master.closed) this._saved.masters[master.pattern] = [master.version, master._shadow, master.pending];
    }
    try {
      this._storage.setItem(this._persistKey, JSON.stringify(this._saved));
    } catch (error) {
      this.logger.warn(`seasync: cannot persist ${this._persistKey} (kept in memory only)`, error);
    }
  }

  // ---------------------------------------------------------------- connection

  /** Start connecting (done by the constructor unless `connect: false`). */
  connect() {
    if (this.closed) throw new Error("this client was closed; make a new one");
    if (this._ws === null && this._retryTimer === null) this._open();
  }

  /** Close the connection and stop reconnecting. Consumers become invalid. */
  close() {
    if (this.closed) return;
    this.closed = true;
    if (this._saveTimer !== null) this._saveNow();
    if (this._onPageHide) globalThis.removeEventListener?.("pagehide", this._onPageHide);
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const ws = this._ws;
    this._lost();
    for (const giveUp of [...this._waiting]) {
      giveUp(new CollectionError("this client was closed while the update waited for a connection", "closed"));
    }
    if (ws) {
      try {
        ws.close(1000, "client closed");
      } catch (error) {
        this.logger.debug?.("seasync: closing failed", error);
      }
    }
  }

  /** `cb(frame)` for every `error` frame from the server. Returns a function that removes the callback. */
  onerror(callback) {
    return this._error.add(callback);
  }

  /** `cb(connected)` whenever the connection opens or drops. Returns a function that removes the callback. */
  onconnectionchange(callback) {
    return this._connection.add(callback);
  }

  _open() {
    this._retryTimer = null;
    if (this.closed) return;
    const generation = ++this._generation;
    let ws;
    try {
      ws = new this.WebSocket(this.url);
    } catch (error) {
      this.logger.error(`seasync: cannot connect to ${this.url}`, error);
      this._retry(false);
      return;
    }
    this._ws = ws;
    ws.onopen = () => {
      if (generation === this._generation) this._opened();
    };
    ws.onmessage = (event) => {
      if (generation !== this._generation) return;
      this._lastFrameAt = Date.now();
      this._dispatch(event.data);
    };
    ws.onclose = () => {
      if (generation !== this._generation) return;
      const wasOpen = this.connected;
      this._lost();
      this._retry(wasOpen);
    };
    ws.onerror = () => {}; // a close event follows
  }

  _opened() {
    this.connections += 1;
    this._openedAt = Date.now();
    this._lastFrameAt = Date.now();
    this._heartbeatSeen = false;
    this.connected = true; // before the handshake, so _send works
    for (const entry of this._entries.values()) {
      entry._confirmed = false;
      entry._resyncing = false;
    }
    for (const message of this._handshake()) this._send(message);
    for (const entry of this._entries.values()) {
      if (entry._exact && entry.value !== null) entry._setValid(true);
    }
    for (const wildcard of this._wildcards.values()) wildcard._status.fire(wildcard);
    if (this.heartbeat) this._watchdog = setInterval(() => this._checkAlive(), Math.min(5000, this.deadAfter));
    this._connection.fire(true);
  }

  /** The socket is gone (closed, dead, or we are closing): forget it and mark everything invalid. */
  _lost() {
    this._generation += 1;
    this._ws = null;
    clearInterval(this._watchdog);
    this._watchdog = null;
    if (!this.connected) return;
    this.connected = false;
    for (const entry of this._entries.values()) {
      entry._confirmed = false;
      entry._probe = 0;
      entry._setValid(false);
    }
    for (const wildcard of this._wildcards.values()) wildcard._status.fire(wildcard);
    const writes = [...this._writes.values()];
    this._writes.clear();
    for (const write of writes) {
      write.reject(new CollectionError(`the connection dropped before the answer to the update of ${write.id}: ` +
        "it may or may not have applied (never resent)", "outcome-unknown"));
    }
    this._connection.fire(false);
  }

  _retry(wasOpen) {
    if (this.closed || this._retryTimer !== null) return;
    if (wasOpen && Date.now() - this._openedAt > STABLE_CONNECTION) this._attempt = 0;
    const delay = backoff(this._attempt, this.reconnectDelay, this.maxReconnectDelay);
    this._attempt += 1;
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _checkAlive() {
    if (!this._heartbeatSeen || !this.connected || Date.now() - this._lastFrameAt <= this.deadAfter) return;
    this.logger.warn(`seasync: nothing heard from ${this.url} for ${this.deadAfter} ms; reconnecting`);
    const ws = this._ws;
    this._lost();
    try {
      ws?.close();
    } catch (error) {
      // already closing
    }
    this._retry(true);
  }

  /** What a connection opens with: options, exact consumers (with versions held), wildcards, masters. */
  _handshake() {
    const options = {name: this.name, ...this.options};
    if (this.heartbeat) options.heartbeat = true;
    const messages = [{action: "client-options-set", options}];
    for (const entry of this._entries.values()) {
      entry._tempExact = false; // the wildcard re-registration resyncs those
      if (entry._exact) messages.push(this._consumerRegistration(entry));
    }
    for (const pattern of this._wildcards.keys()) {
      messages.push({action: "object-consumer-register", pattern, "version-known": 0});
    }
    for (const master of this._masters.values()) {
      master._wanted = true;
      messages.push(master._registration());
      if (master.produce && isWildcard(master.pattern)) {
        // what this producer made before: the server may have lost it (a router restart)
        for (const [id, version] of master.versions) {
          messages.push({action: "object-patch", id, "version-new": version, value: true});
        }
      } else if (!master.produce && master.pending) {
        messages.push(master._uploadValue()); // changed offline: the newer version wins
        this._persistMaster(master);
      }
    }
    const held = [...this._entries.values()].filter((entry) => entry._exact && entry.value !== null);
    if (held.length) {
      messages.push(this._probeFrame());
      for (const entry of held) entry._probe = this._probes;
    }
    return messages;
  }

  _probeFrame() {
    this._probes += 1;
    return {action: "object-consumer-unregister", pattern: `${SYNC_PREFIX}${this._probes}`};
  }

  /** Send one message on the open connection; false (dropped) while disconnected: registrations are resent on connect. */
  _send(message) {
    const ws = this._ws;
    if (!this.connected || ws === null || ws.readyState !== OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // ---------------------------------------------------------------- consumers

  /**
   * Subscribe to an id (returns a Consumer) or a `*` pattern (returns a WildcardConsumer). Pre-seed an exact
   * consumer with `{value, version}` (both or neither), e.g. the state a page was rendered with: the server then
   * sends nothing if that version is current, or just a patch. Consuming the same pattern again returns the same object.
   */
  consume(pattern, {value = null, version = null, path = null} = {}) {
    checkPattern(pattern);
    if (this.closed) throw new Error("this client was closed");
    if (path !== null) return this._consumeSubtree(pattern, path);
    if (isWildcard(pattern)) {
      if (value !== null || !isNullVersion(version)) throw new TypeError("a wildcard consumer cannot be pre-seeded");
      let wildcard = this._wildcards.get(pattern);
      if (!wildcard) {
        wildcard = new WildcardConsumer(this, pattern);
        this._wildcards.set(pattern, wildcard);
        for (const entry of this._entries.values()) {
          if (entry.value !== null && matches(pattern, entry.id)) wildcard._adopt(entry);
        }
        this._send({action: "object-consumer-register", pattern, "version-known": 0});
      }
      return wildcard;
    }
    if ((value === null) !== isNullVersion(version)) throw new TypeError("pre-seed with both value and version, or neither");
    if (value !== null && !isObject(value)) throw new TypeError("value must be an object");
    let entry = this._entries.get(pattern);
    if (!entry) {
      entry = new Consumer(this, pattern);
      this._entries.set(pattern, entry);
    }
    if (entry._exact && entry._path !== null) {
      throw new TypeError(`${pattern} is consumed with path ${entry._path}: unconsume it first`);
    }
    if (entry._exact) return entry;
    if (value === null && entry.value === null && hasOwn(this._saved.consumers, pattern)) {
      [version, value] = this._saved.consumers[pattern]; // the last state persisted: shown at once, stale
    }
    if (value !== null && entry.value === null) {
      entry.value = value;
      entry.version = version;
    }
    entry._exact = true;
    if (!entry._tempExact) {
      this._send(this._consumerRegistration(entry));
      if (this.connected && entry.value !== null && !entry._confirmed) {
        this._send(this._probeFrame());
        entry._probe = this._probes;
      }
    }
    entry._tempExact = false;
    if (entry.value !== null && !entry._resyncing) entry._setValid(this.connected);
    this._persistConsumer(entry);
    return entry;
  }

  /**
   * `consume(id, {path})`: only the subtree at `path` (a JSON Pointer such as "/rows/17", exact ids only).
   * The consumer's `value` is the subtree (any JSON, null while absent); updates come only when something
   * under the path changes. Not pre-seeded nor persisted.
   */
  _consumeSubtree(pattern, path) {
    if (isWildcard(pattern)) throw new TypeError("path needs an exact id, not a pattern with '*'");
    if (typeof path !== "string" || (path !== "" && !path.startsWith("/"))) {
      throw new TypeError("path must be a JSON Pointer such as \"/rows/17\"");
    }
    if (path === "") return this.consume(pattern);
    let entry = this._entries.get(pattern);
    if (entry && entry._exact) {
      if (entry._path !== path) throw new TypeError(`${pattern} is consumed already with another path: unconsume it first`);
      return entry;
    }
    if (!entry) {
      entry = new Consumer(this, pattern);
      this._entries.set(pattern, entry);
    }
    entry._path = path;
    entry._exact = true;
    this._send(this._consumerRegistration(entry));
    return entry;
  }

  _consumerRegistration(entry) {
    const holds = entry._path !== null ? entry._box !== null : entry.value !== null;
    const known = holds && !isNullVersion(entry.version) ? entry.version : 0;
    const message = {action: "object-consumer-register", pattern: entry.id, "version-known": known};
    if (entry._path !== null) message.path = entry._path;
    return message;
  }

  /** Stop consuming `pattern` (a consumer, wildcard consumer or pattern). Returns true if it was consumed. */
  unconsume(pattern) {
    const target = typeof pattern === "string" ? pattern : pattern?.pattern ?? pattern?.id;
    if (this._masters.has(target) && !this._wildcards.has(target) && !this._entries.get(target)?._exact) return false;
    const master = this._masters.get(target);
    if (master) this._masters.delete(target);
    const found = this.unlink(target);
    if (master) this._masters.set(target, master);
    return found;
  }

  /**
   * A writable collection (consumes `id`): `get`, `has`, `size`, `items()`, `onChange(cb)` per item and
   * `update({insert, remove, reset})`, a Promise of the version. Asking again returns the same object.
   */
  collection(id) {
    let found = this._collections.get(id);
    if (found && !found.consumer.destroyed) return found;
    if (isWildcard(id)) throw new TypeError("a collection is one id, not a pattern");
    found = new Collection(this, this.consume(id));
    this._collections.set(id, found);
    return found;
  }

  /** Stop providing `pattern` (a master or its pattern). Returns true if it was mastered. */
  unmaster(pattern) {
    const target = typeof pattern === "string" ? pattern : pattern?.pattern;
    const master = this._masters.get(target);
    if (!master) return false;
    this._masters.delete(target);
    master.closed = true;
    this._forgetSaved("masters", target);
    this._send({action: "object-producer-unregister", pattern: target});
    return true;
  }

  /** Stop consuming and mastering `pattern` (`unconsume` and `unmaster` together). Returns true if there was anything. */
  unlink(pattern) {
    const target = typeof pattern === "string" ? pattern : pattern?.pattern ?? pattern?.id;
    let found = false;
    const wildcard = this._wildcards.get(target);
    if (wildcard) {
      found = true;
      this._wildcards.delete(target);
      this._send({action: "object-consumer-unregister", pattern: target});
      for (const child of [...wildcard.children.values()]) {
        wildcard.children.delete(child.id);
        child._parents.delete(wildcard);
        this._forgetIfOrphan(child);
      }
      wildcard.destroyed = true;
      wildcard._status.fire(wildcard);
      wildcard._destroy.fire(wildcard);
    }
    const entry = this._entries.get(target);
    if (entry && entry._exact) {
      found = true;
      entry._exact = false;
      this._forgetSaved("consumers", target);
      this._send({action: "object-consumer-unregister", pattern: target});
      this._forgetIfOrphan(entry);
    }
    if (this._masters.has(target)) found = this.unmaster(target) || found;
    return found;
  }

  _forgetIfOrphan(entry) {
    if (entry._parents.size || entry._exact) return;
    if (entry._tempExact) {
      entry._tempExact = false;
      this._send({action: "object-consumer-unregister", pattern: entry.id});
    }
    if (this._entries.get(entry.id) === entry) this._entries.delete(entry.id);
    entry._destroyed();
  }

  // ---------------------------------------------------------------- masters

  /**
   * Offer to provide an object: keep-current mode with `{value, version}` (version defaults to [now_ms, 0]),
   * produce-on-demand with `{produce}` (exact id or wildcard). See Master. One master per pattern.
   */
  master(pattern, {value = null, version = null, produce = null} = {}) {
    checkPattern(pattern);
    if (this.closed) throw new Error("this client was closed");
    const existing = this._masters.get(pattern);
    if (existing) return existing;
    let master;
    if (produce) {
      if (value !== null || version !== null) throw new TypeError("give {value, version} or {produce}, not both");
      if (typeof produce !== "function") throw new TypeError("produce must be a function");
      master = new Master(this, pattern, null, null, produce);
    } else {
      if (!isObject(value)) throw new TypeError("a master needs a value object (keep current) or produce (on demand)");
      if (isWildcard(pattern)) throw new TypeError("a keep-current master needs an exact id");
      let v = version ?? [Date.now(), 0];
      let pending = false;
      const saved = this._saved.masters[pattern];
      if (saved && version === null) [v, value, pending] = saved; // no explicit version: the persisted state, offline changes kept
      if (isNullVersion(v)) throw new TypeError("a master's version cannot be 0");
      master = new Master(this, pattern, value, v, null);
      master.pending = Boolean(pending);
    }
    this._masters.set(pattern, master);
    this._send(master._registration());
    if (master.pending && this.connected) this._send(master._uploadValue());
    this._persistMaster(master);
    return master;
  }

  _mastersFor(id) {
    const found = this._masters.has(id) ? [this._masters.get(id)] : [];
    for (const [pattern, master] of this._masters) if (pattern !== id && matches(pattern, id)) found.push(master);
    return found;
  }

  // ---------------------------------------------------------------- incoming frames

  _dispatch(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch (error) {
      this.logger.warn("seasync: ignoring a frame that is not JSON", String(raw).slice(0, 200));
      return;
    }
    if (!isObject(message)) {
      this.logger.warn("seasync: ignoring a frame that is not an object", String(raw).slice(0, 200));
      return;
    }
    try {
      switch (message.action) {
        case "object-update":
          return this._handleUpdate(message);
        case "object-destroy":
          return this._handleDestroy(message);
        case "object-produce":
          return this._handleProduce(message);
        case "error":
          return this._handleError(message);
        case "collection-updated":
          return this._handleWritten(message);
        case "heartbeat":
          this._heartbeatSeen = true;
          return;
        default:
          this.logger.warn("seasync: ignoring a frame with unknown action", message.action);
      }
    } catch (error) {
      this.logger.error("seasync: failed to handle a frame", String(raw).slice(0, 300), error);
    }
  }

  _handleUpdate(message) {
    const id = message.id;
    if (typeof id !== "string") return this.logger.warn("seasync: object-update without an id", message);
    let entry = this._entries.get(id);
    if (!entry) {
      if (![...this._wildcards.keys()].some((pattern) => matches(pattern, id))) return;
      entry = new Consumer(this, id);
      this._entries.set(id, entry);
    }
    const versionNew = message["version-new"];
    const versionOld = message["version-old"] ?? 0;
    if (entry._path !== null) return this._handleSubtreeUpdate(entry, message, versionOld, versionNew);
    let value;
    let patch = null;
    if (hasOwn(message, "value")) {
      value = message.value;
      if (!isObject(value)) return this.logger.warn(`seasync: ${id}: update value is not an object`);
    } else if (hasOwn(message, "patch")) {
      patch = message.patch;
      if (!Array.isArray(patch)) return this.logger.warn(`seasync: ${id}: update patch is not an array`);
      let base;
      if (isNullVersion(versionOld)) base = {};
      else if (entry.value !== null && sameVersion(versionOld, entry.version)) base = entry.value;
      else return this._lostUpdate(entry, versionOld, versionNew);
      try {
        value = applyPatch(base, patch);
        if (!isObject(value)) throw new PatchError("the result is not an object");
      } catch (error) {
        if (!(error instanceof PatchError)) throw error;
        this.logger.error(`seasync: ${id}: patch ${JSON.stringify(versionOld)} -> ${JSON.stringify(versionNew)} ` +
          `does not apply (${error.message}); asking for the full value`);
        return this._resyncFull(entry);
      }
    } else {
      return this.logger.warn(`seasync: ${id}: update with neither value nor patch`);
    }
    for (const wildcard of this._wildcards.values()) {
      if (!wildcard.children.has(id) && matches(wildcard.pattern, id)) wildcard._adopt(entry);
    }
    if (patch === null && entry.value !== null && sameVersion(versionNew, entry.version) && deepEqual(value, entry.value)) {
      entry._resyncing = false; // a resend of what we hold: confirmed, not a change
      entry._confirmed = this.connected;
      entry._probe = 0;
      entry._setValid(this.connected);
    } else {
      entry._update(value, versionNew, patch);
    }
    if (entry._tempExact && !entry._exact) {
      entry._tempExact = false;
      this._send({action: "object-consumer-unregister", pattern: id});
    }
  }

  /**
   * A subtree's update. Held boxed, `{value: subtree}`, so the subtree may be any JSON. The server does not
   * send the versions that touched nothing under the path, so a patch's `version-old` may be newer than the
   * version held (never older: the server patches from what it recorded as sent, or from what we said we
   * hold when registering): it applies to the subtree held.
   */
  _handleSubtreeUpdate(entry, message, versionOld, versionNew) {
    let box;
    let patch = null;
    if (hasOwn(message, "value")) {
      box = {value: message.value};
    } else if (Array.isArray(message.patch)) {
      patch = message.patch;
      if (entry._box === null || isNullVersion(versionOld)) return this._resyncFull(entry);
      const boxed = patch.map((op) => (op && typeof op.path === "string"
        ? {...op, path: "/value" + op.path, ...(typeof op.from === "string" ? {from: "/value" + op.from} : {})} : op));
      try {
        box = applyPatch(entry._box, boxed);
      } catch (error) {
        if (!(error instanceof PatchError)) throw error;
        this.logger.error(`seasync: ${entry.id} ${entry._path}: patch does not apply (${error.message}); resyncing`);
        return this._resyncFull(entry);
      }
    } else {
      return this.logger.warn(`seasync: ${entry.id}: update with neither value nor patch`);
    }
    entry._box = box;
    entry._update(box.value, versionNew, patch);
  }

  /** A patch from a version we do not hold: never apply it; re-register with ours so the server resends. */
  _lostUpdate(entry, versionOld, versionNew) {
    if (entry._resyncing) return;
    if (entry.value === null) return this._resyncFull(entry);
    this.logger.warn(`seasync: ${entry.id}: patch from ${JSON.stringify(versionOld)} but this client holds ` +
      `${JSON.stringify(entry.version)} (an update was lost); resyncing`);
    this._resyncWith(entry, entry.version);
  }

  /** The data held is wrong: forget it and ask for the full value. */
  _resyncFull(entry) {
    entry.value = null;
    entry.version = null;
    entry._box = null;
    this._resyncWith(entry, RESYNC_VERSION);
  }

  _resyncWith(entry, versionKnown) {
    entry._resyncing = true;
    entry._confirmed = false;
    entry._setValid(false);
    if (!entry._exact) entry._tempExact = true; // a wildcard child: a direct registration, dropped once synced
    const message = {action: "object-consumer-register", pattern: entry.id, "version-known": versionKnown};
    if (entry._path !== null) message.path = entry._path;
    this._send(message);
  }

  _handleDestroy(message) {
    const id = message.id;
    if (typeof id !== "string") return;
    const entry = this._entries.get(id);
    if (entry && entry._parents.size) {
      for (const wildcard of [...entry._parents]) wildcard._drop(entry);
      this._forgetIfOrphan(entry);
    }
    for (const master of this._mastersFor(id)) master._destroyedId(id);
  }

  _handleProduce(message) {
    const id = message.id;
    if (typeof id !== "string") return;
    const inferred = message["version-inferred"] ?? null;
    const masters = this._mastersFor(id);
    if (!masters.length) {
      this.logger.warn(`seasync: asked to produce ${id}, which this client does not master; declining`);
      this._send({action: "object-patch", id});
      return;
    }
    const master = masters[0];
    if (!master.produce) {
      master._uploadCurrent();
      return;
    }
    const generation = this._generation;
    Promise.resolve()
      .then(() => master.produce(id, inferred))
      .then((result) => productionMessage(id, result))
      .catch((error) => {
        this.logger.error(`seasync: producing ${id} failed`, error);
        return {action: "object-patch", id, error: `${error?.name ?? "Error"}: ${error?.message ?? error}`};
      })
      .then((reply) => {
        if (generation !== this._generation) return; // the connection that asked is gone; the order was requeued
        if (hasOwn(reply, "version-new")) master.versions.set(id, reply["version-new"]);
        this._send(reply);
      });
  }

  _handleWritten(message) {
    const write = this._writes.get(message.ref);
    if (!write) return this.logger.warn("seasync: collection-updated for a ref not waiting", message.ref);
    write.resolve(message.version);
  }

  _handleError(message) {
    if (message.request === "collection-update" && this._writes.has(message.ref)) {
      const code = typeof message.code === "string" ? message.code : "error";
      this._writes.get(message.ref).reject(new CollectionError(String(message.message ?? "collection update failed"), code));
      return;
    }
    const probe = message.request === "object-consumer-unregister" && typeof message.pattern === "string" &&
      message.pattern.startsWith(SYNC_PREFIX) ? Number(message.pattern.slice(SYNC_PREFIX.length)) : null;
    if (probe !== null) { // our own sync probe: everything registered before it is confirmed
      for (const entry of this._entries.values()) {
        if (entry._probe && entry._probe <= probe && !entry._resyncing && entry.value !== null) {
          entry._probe = 0;
          entry._confirmed = this.connected;
          entry._setValid(entry.valid);
        }
      }
      return;
    }
    this.logger.warn(`seasync: server error: ${message.message}`, message);
    const id = typeof message.id === "string" ? message.id : null;
    const master = id === null ? null : this._masters.get(id);
    if (master && !master.produce && master._lastWasPatch && message.request === "object-patch") {
      master._uploadCurrent(); // the server refused our patch: send the full value
    }
    // A production failure ("object-produce"; null from older routers) concerns the object we consume.
    if (id !== null && (message.request === "object-produce" || message.request === null)) {
      this._entries.get(id)?._setError(String(message.message ?? "error"));
    }
    this._error.fire(message);
  }
}

export default SeasyncClient;
