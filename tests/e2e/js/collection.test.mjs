// Unit tests of seasync.js writable collections (issue 15): client.collection(id), update() answered by
// collection-updated or an error frame (matched by ref), outcome-unknown on a drop (never resent), waiting
// for the connection, reading (get/has/size/items) and per-item onChange events.
// Run: node --test tests/e2e/js/   (tests/e2e/test_js_unit.py runs it from pytest)

import {afterEach, test} from "node:test";
import assert from "node:assert/strict";

import {FakeSocket, quiet} from "./fake_socket.mjs";
import {CollectionError, SeasyncClient, collectionChanges} from "../../../router/static/seasync.js";

const clients = [];
afterEach(() => {
  while (clients.length) clients.pop().close();
});

function makeClient(opts = {}) {
  FakeSocket.all = [];
  const client = new SeasyncClient("ws://test", {name: "unit", WebSocket: FakeSocket, logger: quiet,
    reconnectDelay: 5, heartbeat: false, ...opts});
  clients.push(client);
  return client;
}

const lastSocket = () => FakeSocket.all[FakeSocket.all.length - 1];
const writes = (ws) => ws.take().filter((m) => m.action === "collection-update");
const update = (id, versionOld, versionNew, body) => ({action: "object-update", id, "version-old": versionOld,
  "version-new": versionNew, ...body});

test("collection(id) consumes the id once and reads the items held", () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  assert.equal(client.collection("todos/list"), todos);
  const ws = lastSocket();
  ws.open();
  assert.deepEqual(ws.take().filter((m) => m.action === "object-consumer-register"),
    [{action: "object-consumer-register", pattern: "todos/list", "version-known": 0}]);
  assert.equal(todos.size, 0);
  ws.receive(update("todos/list", 0, 3, {value: {a: {id: "a", text: "milk"}, b: {id: "b", text: "eggs"}}}));
  assert.equal(todos.size, 2);
  assert.equal(todos.version, 3);
  assert.ok(todos.has("a") && !todos.has("z"));
  assert.deepEqual(todos.get("b"), {id: "b", text: "eggs"});
  assert.equal(todos.get("z"), undefined);
  assert.deepEqual(todos.items(), [{id: "a", text: "milk"}, {id: "b", text: "eggs"}]);
});

test("update sends collection-update with its own ref and resolves with the version", async () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  const ws = lastSocket();
  ws.open();
  ws.take();
  const first = todos.update({insert: [{id: "a", text: "milk"}]});
  const second = todos.update({remove: ["a"], reset: false});
  const sent = writes(ws);
  assert.deepEqual(sent, [
    {action: "collection-update", id: "todos/list", insert: [{id: "a", text: "milk"}], remove: [], reset: false,
      ref: sent[0].ref},
    {action: "collection-update", id: "todos/list", insert: [], remove: ["a"], reset: false, ref: sent[1].ref},
  ]);
  assert.notEqual(sent[0].ref, sent[1].ref);
  // answers out of order are matched by ref
  ws.receive({action: "collection-updated", id: "todos/list", ref: sent[1].ref, version: 3});
  ws.receive({action: "collection-updated", id: "todos/list", ref: sent[0].ref, version: 2});
  assert.equal(await first, 2);
  assert.equal(await second, 3);
});

test("an error frame for the ref rejects with its code; a bad update is refused before sending", async () => {
  const client = makeClient();
  const errors = [];
  client.onerror((frame) => errors.push(frame));
  const todos = client.collection("todos/list");
  const ws = lastSocket();
  ws.open();
  ws.take();
  const refused = todos.update({insert: [{id: "a"}]});
  const [sent] = writes(ws);
  ws.receive({action: "error", request: "collection-update", id: "todos/list", ref: sent.ref,
    code: "collection-full", message: "the collection would hold more than 100000 items"});
  await assert.rejects(refused, (error) => error instanceof CollectionError && error.code === "collection-full" &&
    /100000/.test(error.message));
  assert.deepEqual(errors, [], "an answered write is not a stray error");
  await assert.rejects(todos.update({insert: [{text: "no id"}]}), (error) => error.code === "invalid-item");
  await assert.rejects(todos.update({remove: "a"}), (error) => error.code === "invalid-update");
  assert.deepEqual(writes(ws), [], "nothing sent for updates that cannot apply");
});

test("a drop before the answer rejects with outcome-unknown and the update is not resent", async () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  const ws = lastSocket();
  ws.open();
  ws.take();
  const pending = todos.update({insert: [{id: "a"}]});
  assert.equal(writes(ws).length, 1);
  ws.close();
  await assert.rejects(pending, (error) => error instanceof CollectionError && error.code === "outcome-unknown");
  await new Promise((resolve) => setTimeout(resolve, 30));
  const again = lastSocket();
  assert.notEqual(again, ws, "reconnected");
  again.open();
  assert.deepEqual(writes(again), [], "never resent");
});

test("while disconnected an update waits for the connection, up to timeoutMs", async () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  const ws = lastSocket();
  await assert.rejects(todos.update({insert: [{id: "x"}]}, {timeoutMs: 20}),
    (error) => error.code === "not-connected");
  const waiting = todos.update({insert: [{id: "a"}]}, {timeoutMs: 5000});
  assert.deepEqual(ws.sent, []);
  ws.open();
  const sent = writes(ws);
  assert.equal(sent.length, 1, "sent once connected (the timed-out one never)");
  assert.deepEqual(sent[0].insert, [{id: "a"}]);
  ws.receive({action: "collection-updated", id: "todos/list", ref: sent[0].ref, version: 2});
  assert.equal(await waiting, 2);
});

test("no answer within timeoutMs: outcome-unknown", async () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  lastSocket().open();
  await assert.rejects(todos.update({insert: [{id: "a"}]}, {timeoutMs: 20}),
    (error) => error.code === "outcome-unknown");
});

test("onChange: one event per item inserted, replaced, removed", () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  const seen = [];
  todos.onChange((id, item, old) => seen.push([id, item, old]));
  const ws = lastSocket();
  ws.open();
  ws.receive(update("todos/list", 0, 1, {value: {}}));
  assert.deepEqual(seen, []);
  ws.receive(update("todos/list", 1, 2, {patch: [{op: "add", path: "/a", value: {id: "a", n: 1}},
    {op: "add", path: "/b", value: {id: "b", n: 2}}]}));
  assert.deepEqual(seen.splice(0), [["a", {id: "a", n: 1}, null], ["b", {id: "b", n: 2}, null]]);
  ws.receive(update("todos/list", 2, 3, {patch: [{op: "replace", path: "/a/n", value: 10}]}));
  assert.deepEqual(seen.splice(0), [["a", {id: "a", n: 10}, {id: "a", n: 1}]]);
  ws.receive(update("todos/list", 3, 4, {patch: [{op: "remove", path: "/b"}]}));
  assert.deepEqual(seen.splice(0), [["b", null, {id: "b", n: 2}]]);
  ws.receive(update("todos/list", 4, 5, {value: {c: {id: "c"}}})); // a reset as a full value
  assert.deepEqual(seen.splice(0), [["a", null, {id: "a", n: 10}], ["c", {id: "c"}, null]]);
});

test("collectionChanges matches common/collection.py changes", () => {
  assert.deepEqual(collectionChanges(null, {a: {id: "a"}}), [["a", {id: "a"}, null]]);
  assert.deepEqual(collectionChanges({a: {id: "a", x: [1]}}, {a: {id: "a", x: [1]}}), [], "equal items are not changes");
  assert.deepEqual(collectionChanges({a: {id: "a"}, b: {id: "b"}}, {c: {id: "c"}, b: {id: "b", v: 1}}),
    [["a", null, {id: "a"}], ["c", {id: "c"}, null], ["b", {id: "b", v: 1}, {id: "b"}]]);
});

test("close() ends an update waiting for the connection", async () => {
  const client = makeClient();
  const todos = client.collection("todos/list");
  const waiting = todos.update({insert: [{id: "a"}]}, {timeoutMs: null});
  client.close();
  await assert.rejects(waiting, (error) => error instanceof CollectionError && error.code === "closed");
  assert.deepEqual(lastSocket().sent, []);
});
