// The shared client scenario table (tests/fixtures/client_scenarios.json) run against seasync.js.
// tests/unit/common/test_client_scenarios.py runs the same table against the Python client's ClientState.
// Run: node --test tests/e2e/js/   (tests/e2e/test_js_unit.py runs it from pytest)

import {afterEach, test} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";

import {FakeSocket, quiet} from "./fake_socket.mjs";
import {SeasyncClient, backoff, nextVersion, productionMessage, sameVersion} from "../../../router/static/seasync.js";

const TABLE = JSON.parse(readFileSync(new URL("../../fixtures/client_scenarios.json", import.meta.url), "utf8"));

const clients = [];
afterEach(() => clients.splice(0).forEach((client) => client.close()));

class Runner {
  constructor() {
    FakeSocket.all = [];
    this.client = new SeasyncClient("ws://scenario", {name: "scenario", heartbeat: false, WebSocket: FakeSocket,
      logger: quiet, connect: false});
    clients.push(this.client);
    this.changes = new Map();
    this.errors = 0;
    this.destroyed = new Set();
    this.client.onerror(() => { this.errors += 1; });
    this.seen = 0; // frames of FakeSocket.all already taken
  }

  sent() {
    const out = [];
    for (const ws of FakeSocket.all) out.push(...ws.sent.splice(0));
    return out;
  }

  watch(consumer) {
    if (!consumer || consumer._watched) return consumer;
    consumer._watched = true;
    consumer.onchange((child, change) => {
      const id = change?.id ?? child.id;
      this.changes.set(id, (this.changes.get(id) ?? 0) + 1);
    });
    consumer.ondestroy?.((c) => this.destroyed.add(c.id ?? c.pattern));
    return consumer;
  }

  step(step) {
    const client = this.client;
    if ("connect" in step) {
      clearTimeout(client._retryTimer);
      client._retryTimer = null;
      if (client._ws === null) client._open();
      FakeSocket.all[FakeSocket.all.length - 1].open();
    } else if ("disconnect" in step) {
      client._ws.close();
      clearTimeout(client._retryTimer);
      client._retryTimer = null;
    } else if ("consume" in step) {
      const opts = "value" in step ? {value: step.value, version: step.version} : {};
      this.watch(client.consume(step.consume, opts));
    } else if ("unconsume" in step) {
      client.unconsume(step.unconsume);
    } else if ("master" in step) {
      client.master(step.master, {value: step.value, version: step.version});
    } else if ("unmaster" in step) {
      client.unmaster(step.unmaster);
    } else if ("bump" in step) {
      const master = client._masters.get(step.bump);
      master.value = step.value;
      master.bump(step.version);
    } else if ("receive" in step) {
      const ws = client._ws;
      ws.receive(step.receive);
      for (const entry of client._entries.values()) this.watch(entry);
    } else if ("sent" in step) {
      const sent = this.sent();
      if (step.sent !== null) assert.deepEqual(sent, step.sent);
    } else if ("expect" in step) {
      for (const [id, fields] of Object.entries(step.expect)) assert.deepEqual(this.consumer(id, fields), fields, id);
    } else if ("expect_master" in step) {
      for (const [pattern, fields] of Object.entries(step.expect_master)) {
        const master = client._masters.get(pattern);
        const got = {};
        for (const name of Object.keys(fields)) got[name] = master[name];
        assert.deepEqual(got, fields, pattern);
      }
    } else if ("expect_errors" in step) {
      assert.equal(this.errors, step.expect_errors);
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }

  consumer(id, fields) {
    const entry = this.client._entries.get(id) ?? null;
    const names = {last_patch: "lastPatch"};
    const out = {};
    for (const name of Object.keys(fields)) {
      if (name === "destroyed") out[name] = entry === null && this.destroyed.has(id);
      else if (name === "changes") out[name] = this.changes.get(id) ?? 0;
      else if (name === "valid" || name === "stale") out[name] = entry === null ? false : entry[name];
      else out[name] = entry === null ? null : entry[names[name] ?? name];
    }
    return out;
  }
}

for (const scenario of TABLE.scenarios) {
  test(`scenario: ${scenario.name}`, () => {
    const runner = new Runner();
    scenario.steps.forEach((step, number) => {
      try {
        runner.step(step);
      } catch (error) {
        error.message = `step ${number} ${JSON.stringify(step)}: ${error.message}`;
        throw error;
      }
    });
  });
}

test("same_version table", () => {
  for (const [a, b, expected] of TABLE.same_version.cases) assert.equal(sameVersion(a, b), expected, JSON.stringify([a, b]));
});

test("backoff table", () => {
  for (const [attempt, base, maximum, expected] of TABLE.backoff.cases) {
    assert.equal(backoff(attempt, base, maximum), expected, JSON.stringify([attempt, base, maximum]));
  }
});

test("next_version table", () => {
  for (const [version, now, expected] of TABLE.next_version.cases) {
    assert.deepEqual(nextVersion(version, now), expected, JSON.stringify(version));
  }
});

test("production_answers table", () => {
  for (const [result, expected] of TABLE.production_answers.cases) {
    if (expected === "error") assert.throws(() => productionMessage("p", result), TypeError, JSON.stringify(result));
    else assert.deepEqual(productionMessage("p", result), expected, JSON.stringify(result));
  }
});
