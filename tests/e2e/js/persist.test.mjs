// seasync.js persisted state (the `persist` option) against a fake storage and a scripted fake WebSocket.
// The real thing (localStorage, a reload while the front is down) is tests/e2e/test_browser_offline.py.

import {afterEach, test} from "node:test";
import assert from "node:assert/strict";

import {FakeSocket, quiet} from "./fake_socket.mjs";
import {SeasyncClient} from "../../../router/static/seasync.js";

class FakeStorage {
  constructor(items = {}) {
    this.items = new Map(Object.entries(items));
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }
}

const warnings = [];
const logger = {debug() {}, info() {}, warn: (...args) => warnings.push(args.join(" ")), error() {}, log() {}};
const clients = [];
afterEach(() => {
  clients.splice(0).forEach((client) => client.close());
  warnings.length = 0;
});

function makeClient(storage, opts = {}) {
  FakeSocket.all = [];
  const client = new SeasyncClient("ws://test", {name: "unit", WebSocket: FakeSocket, logger, heartbeat: false,
    persist: "page", storage, connect: false, ...opts});
  clients.push(client);
  return client;
}

const lastSocket = () => FakeSocket.all[FakeSocket.all.length - 1];

test("a consumed value is persisted and a new client has it at once, stale, then registers with its version", () => {
  const storage = new FakeStorage();
  const first = makeClient(storage);
  first.consume("x");
  first.connect();
  lastSocket().open();
  lastSocket().receive({action: "object-update", id: "x", "version-old": 0, "version-new": [1, 0], value: {n: 1}});
  first.close(); // writes what the batching delay still held
  assert.deepEqual(JSON.parse(storage.getItem("seasync:page")).consumers.x, [[1, 0], {n: 1}]);

  const second = makeClient(storage);
  const x = second.consume("x");
  assert.deepEqual(x.value, {n: 1});
  assert.deepEqual(x.version, [1, 0]);
  assert.ok(x.stale && !x.valid);
  second.connect();
  lastSocket().open();
  assert.deepEqual(lastSocket().sent.slice(1), [
    {action: "object-consumer-register", pattern: "x", "version-known": [1, 0]},
    {action: "object-consumer-unregister", pattern: "seasync-sync-probe:1"},
  ]);
  lastSocket().receive({action: "object-update", id: "x", "version-old": [1, 0], "version-new": [1, 1],
    patch: [{op: "replace", path: "/n", value: 2}]});
  assert.deepEqual(x.value, {n: 2});
  assert.ok(x.valid && !x.stale && x.lastPatch !== null);
});

test("a master bumped offline keeps its pending change across a restart and uploads it on connect", () => {
  const storage = new FakeStorage();
  const first = makeClient(storage);
  const note = first.master("note", {value: {text: "a"}, version: [1, 0]});
  note.value.text = "offline";
  note.bump([1, 1]);
  assert.ok(note.pending);
  first.close();

  const second = makeClient(storage);
  const again = second.master("note", {value: {text: "what the program starts with"}});
  assert.deepEqual(again.value, {text: "offline"});
  assert.deepEqual(again.version, [1, 1]);
  assert.ok(again.pending);
  second.connect();
  lastSocket().open();
  assert.deepEqual(lastSocket().sent.slice(1), [
    {action: "object-producer-register", pattern: "note", "version-known": [1, 1]},
    {action: "object-patch", id: "note", "version-new": [1, 1], value: {text: "offline"}},
  ]);
  assert.ok(!again.pending);
});

test("a corrupt persisted state is a warning and an empty start", () => {
  for (const raw of ["not json", "[1, 2]", '{"consumers": 3}']) {
    const client = makeClient(new FakeStorage({"seasync:page": raw}));
    const x = client.consume("x");
    assert.equal(x.value, null);
    assert.ok(!x.stale);
    assert.ok(warnings.some((w) => w.includes("unusable")), raw);
    warnings.length = 0;
  }
});

test("pagehide writes at once what the batching delay still holds (a reload loses nothing)", () => {
  const handlers = [];
  globalThis.addEventListener = (name, handler) => handlers.push([name, handler]);
  globalThis.removeEventListener = () => {};
  try {
    const storage = new FakeStorage();
    const client = makeClient(storage);
    client.consume("x");
    client.connect();
    lastSocket().open();
    lastSocket().receive({action: "object-update", id: "x", "version-old": 0, "version-new": 3, value: {n: 3}});
    assert.equal(storage.getItem("seasync:page"), null, "batched: not written yet");
    for (const [name, handler] of handlers) if (name === "pagehide") handler();
    assert.deepEqual(JSON.parse(storage.getItem("seasync:page")).consumers.x, [3, {n: 3}]);
  } finally {
    delete globalThis.addEventListener;
    delete globalThis.removeEventListener;
  }
});
