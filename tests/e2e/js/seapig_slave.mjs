// A consumer that follows the original seapig-client-js 0.2 rules (docs: ../shared/reference/seapig-protocol.md
// §4 and §8), written from those rules for the tests: the original is not in this repo. What it checks is that
// seasync's frames work for a client with the original's limits:
// - on open: client-options-set, then object-consumer-register with version-known = the version held (0 if none);
// - an update with a value, or with version-old 0 or missing, clears the object first;
// - a patch whose version-old is not the version held is logged ("lost some updates") and applied anyway;
// - patches are applied the way a 1.x JSON-Patch library does, and only add, remove, replace and move are
//   accepted here (the reference: a server must send nothing else to these clients), so any other op fails.
//
// Run: node --experimental-websocket seapig_slave.mjs WS_URL OBJECT_ID
// Prints one JSON line per update held: {"version": ..., "object": ...}; "lost" lines for a version mismatch.

const [url, id] = process.argv.slice(2);

function unescape(token) {
  return token.replace(/~1/g, "/").replace(/~0/g, "~");
}

function locate(doc, path) {
  const tokens = path.split("/").slice(1).map(unescape);
  const last = tokens.pop();
  let parent = doc;
  for (const token of tokens) {
    if (parent === null || typeof parent !== "object" || !(token in parent)) throw new Error(`no parent at ${path}`);
    parent = parent[token];
  }
  return [parent, last];
}

function applyOperation(doc, op) {
  if (op.path === "") {
    if (op.op !== "replace" && op.op !== "add") throw new Error(`op ${op.op} on the root`);
    return op.value;
  }
  const [parent, key] = locate(doc, op.path);
  const isArray = Array.isArray(parent);
  const index = key === "-" ? parent.length : Number(key);
  switch (op.op) {
    case "add":
      if (isArray) parent.splice(index, 0, op.value); else parent[key] = op.value;
      break;
    case "replace":
      if (!(key in parent)) throw new Error(`replace of a missing ${op.path}`);
      if (isArray) parent[index] = op.value; else parent[key] = op.value;
      break;
    case "remove":
      if (!(key in parent)) throw new Error(`remove of a missing ${op.path}`);
      if (isArray) parent.splice(index, 1); else delete parent[key];
      break;
    case "move": {
      const [from, fromKey] = locate(doc, op.from);
      const value = from[fromKey];
      if (Array.isArray(from)) from.splice(Number(fromKey), 1); else delete from[fromKey];
      return applyOperation(doc, {op: "add", path: op.path, value});
    }
    default:
      throw new Error(`op ${op.op} is not one the original client's library applies safely`);
  }
  return doc;
}

let object = {};
let version = 0;
const socket = new WebSocket(url);
socket.onopen = () => {
  socket.send(JSON.stringify({action: "client-options-set", options: {name: "seapig-client-js rules"}}));
  socket.send(JSON.stringify({action: "object-consumer-register", pattern: id, "version-known": version}));
};
socket.onmessage = (event) => {
  const message = JSON.parse(event.data);
  if (message.action !== "object-update" || message.id !== id) return;
  const old = message["version-old"];
  if (message.value !== undefined || !old) object = {};
  else if (JSON.stringify(old) !== JSON.stringify(version)) console.log(JSON.stringify({lost: {old, held: version}}));
  try {
    if (message.value !== undefined) object = message.value;
    else for (const op of message.patch) object = applyOperation(object, op);
  } catch (error) {
    console.log(JSON.stringify({error: String(error.message)}));
    process.exit(1);
  }
  version = message["version-new"];
  console.log(JSON.stringify({version, object}));
};
socket.onclose = () => process.exit(0);
