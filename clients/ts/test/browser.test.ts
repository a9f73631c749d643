// (c) The browser path. Browsers cannot open bidirectional streams, so they
// take pushes from the server-streaming EdgeService.Subscribe and send
// everything else as unary calls (EdgeService.Ack with the session id,
// MessageService.SendMessage, ...), over HTTP/1.1 or HTTP/2.
//
// connect-node's createConnectTransport with httpVersion "1.1" speaks the
// same Connect protocol wire format as connect-web's fetch transport. The
// last tests run connect-web itself on Node's global fetch.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as web from "@connectrpc/connect-web";

import { bearer, createWaggleClients, PROTOCOL_VERSION } from "../src/index.js";
import { EdgeService } from "../src/edge.js";
import { baseUrl, FrameReader, pushHasMessage, register, subscribe, textMessage, waitDelivered, type User } from "./util.js";

async function groupOf(alice: User, bob: User): Promise<string> {
  const conv = (await alice.clients.conversations.createGroupConversation({ title: "ts browser", memberUserIds: [bob.id] })).conversation;
  assert.ok(conv);
  return conv.conversationId;
}

test("Subscribe, Ack and SendMessage over HTTP/1.1 with the Connect protocol", async () => {
  const [alice, bob] = await Promise.all([register("alice"), register("bob")]);
  const conv = await groupOf(alice, bob);

  const h1 = createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(alice.token)] });
  const clients = createWaggleClients(h1);
  const sub = await subscribe(clients, "waggle-ts-test (h1)");
  try {
    const welcome = sub.welcome;
    assert.ok(welcome.sessionId);
    assert.equal(welcome.userId, alice.id);

    // The subscription acks the push with the unary Ack (within 500 ms, see
    // acks.ts): the edge reports it as delivered.
    const bobs = (await bob.clients.messages.sendMessage(textMessage(conv, "hi browser"))).message;
    assert.ok(bobs);
    const push = await sub.frames.until("a Push of Bob's message", (f) => pushHasMessage(f, bobs.messageId));
    assert.equal(push.kind.case, "push");
    assert.ok(push.kind.value.pushId > 0n);
    await waitDelivered(bob, conv, bobs.seq, alice.deviceId);

    const mine = await clients.messages.sendMessage(textMessage(conv, "hello from HTTP/1.1"));
    assert.equal(mine.message?.senderUserId, alice.id);
    assert.equal(mine.message?.seq, bobs.seq + 1n);

    // Another user's session, or one that does not exist, is not found.
    const bobsClients = createWaggleClients(createConnectTransport({ baseUrl, httpVersion: "1.1", interceptors: [bearer(bob.token)] }));
    await assert.rejects(
      bobsClients.edge.ack({ sessionId: welcome.sessionId, pushId: 1n }),
      (e) => ConnectError.from(e).code === Code.NotFound,
    );
  } finally {
    await sub.close();
  }
});

test("Subscribe without a bearer token is unauthenticated", async () => {
  const edge = createClient(EdgeService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  const frames = new FrameReader(edge.subscribe({ protocolVersion: PROTOCOL_VERSION }));
  const err = await frames.end();
  assert.equal(err?.code, Code.Unauthenticated);
});

test("connect-web on fetch: unary calls, and Subscribe with a push", async () => {
  const [alice, bob] = await Promise.all([register("alice"), register("bob")]);
  const conv = await groupOf(alice, bob);

  // Node's global fetch (undici) stands in for the browser's.
  const transport = web.createConnectTransport({ baseUrl, interceptors: [bearer(alice.token)] });
  const clients = createWaggleClients(transport);
  const sent = await clients.messages.sendMessage(textMessage(conv, "hello from connect-web"));
  assert.equal(sent.message?.senderUserId, alice.id);
  const history = await clients.messages.listMessages({ conversationId: conv, pageSize: 10 });
  assert.ok(history.messages.some((m) => m.messageId === sent.message?.messageId));

  const sub = await subscribe(clients, "waggle-ts-test (fetch)");
  try {
    const bobs = (await bob.clients.messages.sendMessage(textMessage(conv, "hi fetch"))).message;
    assert.ok(bobs);
    await sub.frames.until("a Push of Bob's message", (f) => pushHasMessage(f, bobs.messageId));
    await waitDelivered(bob, conv, bobs.seq, alice.deviceId); // acked with the unary Ack over fetch
  } finally {
    await sub.close();
  }
});

test("connect-web on fetch: a unary call with the gRPC-Web protocol", async () => {
  const alice = await register("alice");
  const clients = createWaggleClients(web.createGrpcWebTransport({ baseUrl, interceptors: [bearer(alice.token)] }));
  const list = await clients.conversations.listConversations({});
  assert.deepEqual(list.conversations, []);
  await assert.rejects(
    createWaggleClients(web.createGrpcWebTransport({ baseUrl })).conversations.listConversations({}),
    (e) => ConnectError.from(e).code === Code.Unauthenticated,
  );
});
