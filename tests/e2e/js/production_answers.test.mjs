// seasync.js answers a production by the same rules as the Python client and the worker: one table,
// tests/unit/common/production_answers.json, run here and by tests/unit/common/test_production_answer.py.

import {test} from "node:test";
import assert from "node:assert/strict";
import {readFileSync} from "node:fs";

import {productionMessage} from "../../../router/static/seasync.js";

const TABLE = JSON.parse(readFileSync(new URL("../../unit/common/production_answers.json", import.meta.url), "utf8")).cases;

for (const {name, result, answer} of TABLE) {
  test(`production answer: ${name}`, () => {
    if (answer === null) {
      assert.throws(() => productionMessage("o", result), TypeError);
    } else {
      assert.deepEqual(productionMessage("o", result), answer);
    }
  });
}

test("production answer: a version number that is not finite is refused", () => {
  for (const version of [Infinity, -Infinity, NaN]) {
    assert.throws(() => productionMessage("o", [{}, version]), TypeError);
  }
});
