// Open YAML files in the real yaml-language-server (as an editor does, over stdio) and print
// the diagnostics it publishes for each, as JSON: {"/abs/file.yaml": [{line, character,
// message, source}, ...], ...}. Each file's schema comes from its own first-line modeline
// (`# yaml-language-server: $schema=...`), resolved from the file's folder on disk.
// Usage: node yaml_ls_check.mjs FILE...
import { spawn } from "child_process";
import fs from "fs";
import path from "path";
import { createRequire } from "module";
import { pathToFileURL, fileURLToPath } from "url";

const require = createRequire(import.meta.url);
const server = path.join(path.dirname(require.resolve("yaml-language-server/package.json")),
                         "bin", "yaml-language-server");
const files = process.argv.slice(2).map((f) => path.resolve(f));
if (files.length === 0) { console.error("usage: node yaml_ls_check.mjs FILE..."); process.exit(2); }

// Validation only, and nothing from the network: no SchemaStore catalog, no CRD store.
const settings = {
  validate: true, hover: false, completion: false, format: { enable: false },
  schemas: {}, schemaStore: { enable: false }, kubernetesCRDStore: { enable: false },
};
const QUIET_MS = 400;     // after every file has diagnostics, this long without more ends the run
const TIMEOUT_MS = 30000;

const child = spawn(process.execPath, [server, "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
let nextId = 1;
const pending = new Map();
const diagnostics = new Map();
let quietTimer = null;

function send(message) {
  const body = Buffer.from(JSON.stringify({ jsonrpc: "2.0", ...message }), "utf8");
  child.stdin.write(`Content-Length: ${body.length}\r\n\r\n`);
  child.stdin.write(body);
}
function request(method, params) {
  const id = nextId++;
  send({ id, method, params });
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
const notify = (method, params) => send({ method, params });

function finish() {
  const out = {};
  for (const file of files) out[file] = diagnostics.get(file) ?? null;
  process.stdout.write(JSON.stringify(out) + "\n");
  child.kill();
  process.exit(0);
}

function handle(message) {
  if (message.id !== undefined && message.method === undefined) {   // a response to us
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (waiting) (message.error ? waiting.reject(new Error(message.error.message)) : waiting.resolve(message.result));
    return;
  }
  if (message.id !== undefined) {                                    // a request from the server
    let result = null;
    if (message.method === "workspace/configuration") {
      result = message.params.items.map((item) => (item.section === "yaml" ? settings : {}));
    }
    send({ id: message.id, result });
    return;
  }
  if (message.method === "textDocument/publishDiagnostics") {
    const file = fileURLToPath(message.params.uri);
    diagnostics.set(file, message.params.diagnostics.map((d) => ({
      line: d.range.start.line + 1, character: d.range.start.character + 1,
      message: d.message, source: d.source ?? null,
    })));
    if (files.every((f) => diagnostics.has(f))) {
      clearTimeout(quietTimer);
      quietTimer = setTimeout(finish, QUIET_MS);
    }
  }
}

let buffer = Buffer.alloc(0);
child.stdout.on("data", (chunk) => {
  buffer = Buffer.concat([buffer, chunk]);
  for (;;) {
    const end = buffer.indexOf("\r\n\r\n");
    if (end < 0) return;
    const length = Number(/Content-Length: *(\d+)/i.exec(buffer.subarray(0, end).toString("ascii"))[1]);
    if (buffer.length < end + 4 + length) return;
    const body = buffer.subarray(end + 4, end + 4 + length).toString("utf8");
    buffer = buffer.subarray(end + 4 + length);
    handle(JSON.parse(body));
  }
});
child.on("exit", (code) => { console.error(`yaml-language-server exited (${code})`); process.exit(1); });
setTimeout(() => {
  const missing = files.filter((f) => !diagnostics.has(f));
  console.error(`no diagnostics within ${TIMEOUT_MS} ms for: ${missing.join(", ")}`);
  child.kill();
  process.exit(1);
}, TIMEOUT_MS).unref();

const root = pathToFileURL(process.cwd()).href;
await request("initialize", {
  processId: process.pid, rootUri: root, workspaceFolders: [{ uri: root, name: "fnl" }],
  capabilities: { workspace: { configuration: true, didChangeConfiguration: { dynamicRegistration: false } },
                  textDocument: { publishDiagnostics: {} } },
});
notify("initialized", {});
notify("workspace/didChangeConfiguration", { settings: { yaml: settings } });
for (const file of files) {
  notify("textDocument/didOpen", { textDocument: {
    uri: pathToFileURL(file).href, languageId: "yaml", version: 1, text: fs.readFileSync(file, "utf8") } });
}
