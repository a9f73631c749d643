// @waggle/client: Waggle's generated TypeScript (protobuf-es v2 messages and
// Connect-ES service descriptors, from gen/ts) with a few helpers. Each
// protobuf package is a namespace here and a subpath export of its own:
//
//   import { createWaggleClients, bearer, edge, chat } from "@waggle/client";
//   import { MessageService } from "@waggle/client/chat";
export * as account from "./account.js";
export * as bus from "./bus.js";
export * as chat from "./chat.js";
export * as contact from "./contact.js";
export * as edge from "./edge.js";
export * as presence from "./presence.js";
export { PROTOCOL_VERSION, bearer, createWaggleClients, type WaggleClients } from "./client.js";
