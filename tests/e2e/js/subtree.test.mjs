// (Written by the helper "subtree" against its own implementation; run against the one merged.)
// Subtree subscriptions in seasync.js (issue 17 item 1): consume(id, {path}) registers with the path, holds the
// subtree (null when absent), applies patches relative to it from a later version-old (the server skips the
// updates that leave it unchanged), and resyncs and reconnects with the path.
// Run: node --test tests/e2e/js/   (tests/e2e/test_js_unit.py runs it from pytest)

import {afterEach, test} from "node:test";
import assert from "node:assert/strict";

import {FakeSocket, quiet} from "./fake_socket.mjs";
import {SeasyncClient} from "../../../router/static/seasync.js";

const clients = [];
afterEach(() => clients.splice(0).forEach((client) => client.close()));

function makeClient() {
  FakeSocket.all = [];
  const client = new SeasyncClient("ws://test", {name: "unit", WebSocket: FakeSocket, logger: quiet,
    reconnectDelay: 5, maxReconnectDelay: 10});
  clients.push(client);
  return client;
}

const lastSocket = () => FakeSocket.all[FakeSocket.all.length - 1];
const update = (versionOld, versionNew, body) => ({action: "object-update", id: "doc", path: "/rows/1",
  "version-old": versionOld, "version-new": versionNew, ...body});
const registrations = (frames) => frames.filter((f) => f.action === "object-consumer-register");

test("a path consumer registers with its path and holds the subtree", () => {
  const client = makeClient();
  const row = client.consume("doc", {path: "/rows/1"});
  const seen = [];
  row.onchange((entry, change) => seen.push([entry.version, change.patch]));
  const ws = lastSocket();
  ws.open();
  assert.deepEqual(registrations(ws.take()),
    [{action: "object-consumer-register", pattern: "doc", "version-known": 0, path: "/rows/1"}]);
  ws.receive(update(0, 1, {value: null})); // absent from the object: held all the same
  assert.equal(row.value, null);
  assert.ok(row.valid);
  ws.receive(update(3, 4, {patch: [{op: "replace", path: "", value: {v: 1}}]})); // 2, 3 did not change it
  assert.deepEqual(row.value, {v: 1});
  ws.receive(update(6, 7, {patch: [{op: "replace", path: "/v", value: 2}]}));
  assert.deepEqual(row.value, {v: 2});
  assert.deepEqual(row.version, 7);
  assert.deepEqual(seen.map(([v]) => v), [1, 4, 7]);
  ws.receive(update(7, 8, {patch: [{op: "remove", path: "/nope"}]})); // does not apply: full resync, with the path
  assert.deepEqual(registrations(ws.take()).map((f) => f.path), ["/rows/1"]);
  assert.ok(!row.valid);
  ws.receive(update(0, 8, {value: {v: 3}}));
  assert.deepEqual(row.value, {v: 3});
  ws.close(); // reconnects with the version held and the path
});

test("reconnect re-registers with the path and the version held", async () => {
  const client = makeClient();
  client.consume("doc", {path: "/rows/1"});
  let ws = lastSocket();
  ws.open();
  ws.take();
  ws.receive(update(0, 5, {value: {v: 0}}));
  ws.close();
  const deadline = Date.now() + 2000;
  while (lastSocket() === ws && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  ws = lastSocket();
  ws.open();
  assert.deepEqual(registrations(ws.take()),
    [{action: "object-consumer-register", pattern: "doc", "version-known": 5, path: "/rows/1"}]);
});

test("what a path consumer cannot mean is refused", () => {
  const client = makeClient();
  client.consume("doc", {path: "/a"});
  assert.throws(() => client.consume("doc", {path: "/b"}), TypeError);
  assert.throws(() => client.consume("doc"), TypeError);
  client.consume("d*"); // allowed: for "doc" the exact registration's path applies (PROTOCOL §3)
  assert.throws(() => client.consume("x*", {path: "/a"}), TypeError);
  assert.throws(() => client.consume("other", {path: "a"}));
  assert.equal(client.consume("doc", {path: "/a"}).path, "/a");
});
