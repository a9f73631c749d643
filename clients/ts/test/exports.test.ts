// The package re-exports every generated file, so a new .proto cannot be
// left out silently. Needs no server.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import * as waggle from "../src/index.js";

// This file runs from dist/clients/ts/test/.
const pkg = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const gen = resolve(pkg, "../../gen/ts");

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

test("every file of gen/ts is re-exported from src/", () => {
  const src = readdirSync(join(pkg, "src"))
    .filter((f) => f.endsWith(".ts"))
    .map((f) => readFileSync(join(pkg, "src", f), "utf8"))
    .join("\n");
  const files = walk(gen).filter((f) => f.endsWith("_pb.ts"));
  assert.ok(files.length > 0, `no generated files under ${gen}`);
  for (const f of files) {
    const spec = `"../../../gen/ts/${relative(gen, f).replace(/\.ts$/, ".js")}"`;
    assert.ok(src.includes(`export * from ${spec}`), `src/ does not re-export ${spec}: add it to the module of its package`);
  }
});

test("the namespaces carry the services", () => {
  assert.equal(waggle.account.AccountService.typeName, "waggle.account.v1.AccountService");
  assert.equal(waggle.chat.MessageService.typeName, "waggle.chat.v1.MessageService");
  assert.equal(waggle.chat.ConversationService.typeName, "waggle.chat.v1.ConversationService");
  assert.equal(waggle.contact.ContactService.typeName, "waggle.contact.v1.ContactService");
  assert.equal(waggle.edge.EdgeService.typeName, "waggle.edge.v1.EdgeService");
  assert.equal(waggle.presence.PresenceService.typeName, "waggle.presence.v1.PresenceService");
  assert.equal(waggle.edge.EdgeService.method.connect.methodKind, "bidi_streaming");
  assert.equal(waggle.edge.EdgeService.method.subscribe.methodKind, "server_streaming");
});
