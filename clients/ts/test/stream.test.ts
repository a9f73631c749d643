// (b) The bidirectional EdgeService.Connect stream over HTTP/2, with the
// gRPC protocol (createGrpcTransport) and the Connect protocol
// (createConnectTransport, httpVersion "2"), both from @connectrpc/connect-node.
import assert from "node:assert/strict";
import { test } from "node:test";

import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

import { baseUrl, openSession, pushHasMessage, register, show, textMessage, waitDelivered } from "./util.js";

const transports: [string, () => Transport][] = [
  ["gRPC", () => createGrpcTransport({ baseUrl })],
  ["Connect", () => createConnectTransport({ baseUrl, httpVersion: "2" })],
];

for (const [protocol, transport] of transports) {
  test(`EdgeService.Connect over ${protocol} on HTTP/2: hello, send, push, ack, ping`, async () => {
    const [alice, bob] = await Promise.all([register("alice"), register("bob")]);
    const conv = (await alice.clients.conversations.createGroupConversation({ title: `ts ${protocol}`, memberUserIds: [bob.id] })).conversation;
    assert.ok(conv);

    const abort = new AbortController();
    const s = await openSession(transport(), alice.token, abort.signal);
    try {
      // Hello → Welcome.
      assert.ok(s.welcome.sessionId);
      assert.equal(s.welcome.userId, alice.id);
      assert.equal(s.welcome.deviceId, alice.deviceId);
      assert.equal(s.welcome.protocolVersion, 1);
      assert.ok(s.welcome.heartbeatInterval && s.welcome.heartbeatInterval.seconds > 0n);

      // A send_message command → its Result, correlated by id.
      s.send({ id: 1n, kind: { case: "sendMessage", value: textMessage(conv.conversationId, `from the ${protocol} stream`) } });
      const answer = await s.frames.until("the Result of command 1", (f) => f.id === 1n);
      assert.equal(answer.kind.case, "result", `command 1 answered with ${show(answer)}`);
      assert.equal(answer.kind.value.kind.case, "sendMessage");
      const mine = answer.kind.value.kind.value.message;
      assert.ok(mine && mine.seq > 0n);
      assert.equal(mine.senderUserId, alice.id);

      // Another user's message arrives as a Push, and the session acks it
      // (within 500 ms, see acks.ts): the edge reports it as delivered.
      const bobs = (await bob.clients.messages.sendMessage(textMessage(conv.conversationId, `hi ${protocol} stream`))).message;
      assert.ok(bobs);
      const push = await s.frames.until("a Push of Bob's message", (f) => pushHasMessage(f, bobs.messageId));
      assert.equal(push.kind.case, "push");
      assert.ok(push.kind.value.pushId > 0n, "a push that needs an ack");
      const event = push.kind.value.events.find((e) => e.kind.case === "message" && e.kind.value.messageId === bobs.messageId);
      assert.equal(event?.seq, bobs.seq);
      await waitDelivered(bob, conv.conversationId, bobs.seq, alice.deviceId);

      // Ping → Pong, echoing the frame id.
      s.send({ id: 2n, kind: { case: "ping", value: {} } });
      const pong = await s.frames.until("the Pong", (f) => f.kind.case === "pong");
      assert.equal(pong.id, 2n);

      // A command the server refuses is answered with an Error frame and
      // the session stays open.
      s.send({ id: 3n, kind: { case: "sendMessage", value: textMessage("00000000-0000-0000-0000-000000000000", "nowhere") } });
      const refused = await s.frames.until("the Error of command 3", (f) => f.id === 3n);
      assert.equal(refused.kind.case, "error");
      assert.equal(refused.kind.value.code, "not_found");
      s.send({ id: 4n, kind: { case: "ping", value: {} } });
      await s.frames.until("the second Pong", (f) => f.kind.case === "pong" && f.id === 4n);
    } finally {
      // Half-close: the server ends the stream cleanly.
      const err = await s.close();
      abort.abort();
      assert.equal(err, undefined, `the stream ended with ${err?.message}`);
    }
  });
}

test("EdgeService.Connect refuses a bad token", async () => {
  await assert.rejects(openSession(createGrpcTransport({ baseUrl }), "v1.not-a-token"), /unauthenticated|invalid/i);
});
