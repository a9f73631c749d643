// (a) Accounts and unary calls over the Connect protocol on HTTP/2
// (createConnectTransport from @connectrpc/connect-node, httpVersion "2").
import assert from "node:assert/strict";
import { test } from "node:test";

import { Code, ConnectError } from "@connectrpc/connect";

import { bearer, createWaggleClients } from "../src/index.js";
import { ConversationType } from "../src/chat.js";
import { connectH2, password, register, textMessage } from "./util.js";

test("register, log in, refresh and reject a bad password", async () => {
  const alice = await register("alice");
  assert.match(alice.id, /^[0-9a-f-]{36}$/);
  assert.ok(alice.token.length > 20, "an access token");

  const anon = createWaggleClients(connectH2());
  const login = await anon.accounts.login({ username: alice.name, password, deviceName: "second device" });
  assert.equal(login.user?.userId, alice.id);
  assert.notEqual(login.deviceId, alice.deviceId, "a login is a new device");
  assert.ok(login.tokens?.refreshToken);

  const refreshed = await anon.accounts.refreshToken({ refreshToken: login.tokens.refreshToken });
  assert.ok(refreshed.tokens?.accessToken);

  await assert.rejects(
    anon.accounts.login({ username: alice.name, password: "not the password", deviceName: "x" }),
    (e) => ConnectError.from(e).code === Code.Unauthenticated,
  );

  const asSecondDevice = createWaggleClients(connectH2([bearer(login.tokens.accessToken)]));
  const devices = await asSecondDevice.accounts.listDevices({});
  assert.deepEqual(new Set(devices.devices.map((d) => d.deviceId)), new Set([alice.deviceId, login.deviceId]));
});

test("calls without a token are unauthenticated", async () => {
  const anon = createWaggleClients(connectH2());
  await assert.rejects(anon.conversations.listConversations({}), (e) => ConnectError.from(e).code === Code.Unauthenticated);
});

test("create a group, send, list history and sync", async () => {
  const [alice, bob] = await Promise.all([register("alice"), register("bob")]);

  const created = await alice.clients.conversations.createGroupConversation({ title: "ts unary", memberUserIds: [bob.id] });
  const conv = created.conversation;
  assert.ok(conv);
  assert.equal(conv.type, ConversationType.GROUP);
  assert.equal(conv.memberCount, 2);

  const first = await alice.clients.messages.sendMessage(textMessage(conv.conversationId, "hello from TypeScript"));
  const m1 = first.message;
  assert.ok(m1);
  assert.equal(m1.senderUserId, alice.id);
  assert.ok(m1.seq > 0n);

  // The same client_msg_id again returns the original message.
  const again = await alice.clients.messages.sendMessage({ ...textMessage(conv.conversationId, "hello from TypeScript"), clientMsgId: m1.clientMsgId });
  assert.equal(again.duplicate, true);
  assert.equal(again.message?.messageId, m1.messageId);

  const reply = await bob.clients.messages.sendMessage(textMessage(conv.conversationId, "hi Alice"));
  const m2 = reply.message;
  assert.ok(m2);
  assert.equal(m2.seq, m1.seq + 1n, "one gap-free sequence per conversation");

  const history = await bob.clients.messages.listMessages({ conversationId: conv.conversationId, pageSize: 10 });
  const bodies = history.messages.map((m) => (m.content?.body.case === "text" ? m.content.body.value.body : ""));
  assert.deepEqual(new Set(bodies), new Set(["hello from TypeScript", "hi Alice"]));

  // A first sync (no cursor) returns everything, a later one only what is new.
  let sync = await bob.clients.messages.sync({ pageSize: 100 });
  let cursor = sync.nextCursor;
  while (sync.hasMore) {
    sync = await bob.clients.messages.sync({ cursor, pageSize: 100 });
    cursor = sync.nextCursor;
  }
  assert.ok(cursor, "a cursor to resume from");
  const m3 = (await alice.clients.messages.sendMessage(textMessage(conv.conversationId, "after the sync"))).message;
  assert.ok(m3);
  const delta = await bob.clients.messages.sync({ cursor, pageSize: 100 });
  const got = delta.events.filter((e) => e.kind.case === "message").map((e) => e.seq);
  assert.deepEqual(got, [m3.seq]);

  // Someone else's conversation is not found, so ids cannot be probed.
  const eve = await register("eve");
  await assert.rejects(
    eve.clients.messages.listMessages({ conversationId: conv.conversationId }),
    (e) => ConnectError.from(e).code === Code.NotFound,
  );
});
