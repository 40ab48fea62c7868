// Parse a Mermaid file with Mermaid's own parser; exit 1 with the parser's message if it fails.
// Usage: node mermaid_parse.mjs FILE
import { JSDOM } from "jsdom";
import fs from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window; globalThis.document = dom.window.document;
globalThis.DOMPurify = undefined;
const mermaid = (await import("mermaid")).default;
mermaid.initialize({ startOnLoad: false });
const text = fs.readFileSync(process.argv[2], "utf8");
try { const r = await mermaid.parse(text); console.log("ok", JSON.stringify(r)); }
catch (e) { console.log("error", e.message || String(e)); process.exit(1); }
