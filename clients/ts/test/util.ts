// Helpers shared by the live tests. The harness (harness.ts) starts a
// `waggle serve` and passes its URL in WAGGLE_URL; set WAGGLE_URL yourself to
// run the tests against a server you started.
import { randomBytes, randomUUID } from "node:crypto";

import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";

import { bearer, createWaggleClients, PROTOCOL_VERSION, type WaggleClients } from "../src/index.js";
import type { SendMessageRequestSchema } from "../src/chat.js";
import { EdgeService, ServerFrameSchema, type ClientFrameSchema, type ConnectRequestSchema, type ServerFrame, type Welcome } from "../src/edge.js";
import { Acker } from "./acks.js";

export const baseUrl = process.env.WAGGLE_URL ?? "";
if (!baseUrl) {
  throw new Error("WAGGLE_URL is not set: run the tests through `npm test` (test/harness.ts), or point WAGGLE_URL at a running `waggle serve`");
}

export const password = "correct horse battery";

/** Connect protocol over HTTP/2 (prior knowledge on http://), as native apps on Node would use. */
export function connectH2(interceptors: Interceptor[] = []): Transport {
  return createConnectTransport({ baseUrl, httpVersion: "2", interceptors });
}

/** A registered user with a logged-in device and clients acting as it. */
export interface User {
  name: string;
  id: string;
  deviceId: string;
  token: string;
  /** Connect over HTTP/2, with the user's bearer token. */
  clients: WaggleClients;
}

/** A fresh, valid username: 3 to 32 characters of [a-z0-9_.-]. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(5).toString("hex")}`;
}

export async function register(prefix: string): Promise<User> {
  const name = uniqueName(prefix);
  const anon = createWaggleClients(connectH2());
  const res = await anon.accounts.register({ username: name, password, displayName: prefix, deviceName: `${prefix} test device` });
  const token = res.tokens?.accessToken ?? "";
  return {
    name,
    id: res.user?.userId ?? "",
    deviceId: res.deviceId,
    token,
    clients: createWaggleClients(connectH2([bearer(token)])),
  };
}

export function textMessage(conversationId: string, body: string): MessageInitShape<typeof SendMessageRequestSchema> {
  return { conversationId, clientMsgId: randomUUID(), content: { body: { case: "text", value: { body } } } };
}

/** Rejects with what if p does not settle within ms. */
export async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Pushable is an async iterable fed by push(): the request side of a
 * bidirectional stream that the test writes to as it goes.
 */
export class Pushable<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private wake?: () => void;
  private ended = false;

  push(item: T): void {
    if (this.ended) throw new Error("push after end");
    this.items.push(item);
    this.wake?.();
  }

  /** end closes the request side (a half-close) once queued items are sent. */
  end(): void {
    this.ended = true;
    this.wake?.();
  }

  // A generator, because connect-es needs the iterator's throw and return.
  async *[Symbol.asyncIterator](): AsyncGenerator<T, void> {
    try {
      for (;;) {
        const item = this.items.shift();
        if (item !== undefined) {
          yield item;
        } else if (this.ended) {
          return;
        } else {
          await new Promise<void>((resolve) => (this.wake = resolve));
          this.wake = undefined;
        }
      }
    } finally {
      this.ended = true;
    }
  }
}

/**
 * FrameReader reads ServerFrames from a stream, waiting for the one a test
 * expects and keeping the others it passed for error messages. Pushes it
 * reads count as applied: its acker, once set, acks them.
 */
export class FrameReader {
  readonly seen: ServerFrame[] = [];
  acker?: Acker;
  private it: AsyncIterator<{ frame?: ServerFrame }>;
  private pending?: Promise<IteratorResult<{ frame?: ServerFrame }>>;

  constructor(responses: AsyncIterable<{ frame?: ServerFrame }>) {
    this.it = responses[Symbol.asyncIterator]();
  }

  private async read(): Promise<IteratorResult<{ frame?: ServerFrame }>> {
    this.pending ??= this.it.next();
    const r = await this.pending;
    this.pending = undefined;
    return r;
  }

  /** until returns the first frame that matches, failing after ms. */
  async until(what: string, match: (f: ServerFrame) => boolean, ms = 10_000): Promise<ServerFrame> {
    const deadline = Date.now() + ms;
    for (;;) {
      const left = deadline - Date.now();
      let r: IteratorResult<{ frame?: ServerFrame }>;
      try {
        r = await within(Math.max(left, 1), what, this.read());
      } catch (e) {
        throw new Error(`${(e as Error).message}; frames seen: ${this.describe()}`, { cause: e });
      }
      if (r.done) throw new Error(`stream ended while waiting for ${what}; frames seen: ${this.describe()}`);
      const f = r.value.frame;
      if (!f) continue;
      this.saw(f);
      if (match(f)) return f;
    }
  }

  /** end waits for the stream to finish, returning the error it ended with, if any. */
  async end(ms = 10_000): Promise<ConnectError | undefined> {
    try {
      for (;;) {
        const r = await within(ms, "the end of the stream", this.read());
        if (r.done) return undefined;
        if (r.value.frame) this.saw(r.value.frame);
      }
    } catch (e) {
      return ConnectError.from(e);
    }
  }

  private saw(f: ServerFrame): void {
    this.seen.push(f);
    if (f.kind.case === "push") this.acker?.add(f.kind.value.pushId);
  }

  describe(): string {
    return this.seen.map((f) => f.kind.case ?? "?").join(", ") || "none";
  }
}

/**
 * A session on the bidirectional EdgeService.Connect stream. It acks the
 * pushes its frames read by the policy of acks.ts, with `ack` frames.
 */
export interface Session {
  welcome: Welcome;
  frames: FrameReader;
  send(frame: MessageInitShape<typeof ClientFrameSchema>): void;
  /** close acks what the session holds, half-closes the stream and waits for the server to end it. */
  close(): Promise<ConnectError | undefined>;
}

/** openSession opens EdgeService.Connect on transport and says Hello. */
export async function openSession(transport: Transport, token: string, signal?: AbortSignal): Promise<Session> {
  const edge: Client<typeof EdgeService> = createClient(EdgeService, transport);
  const requests = new Pushable<MessageInitShape<typeof ConnectRequestSchema>>();
  const frames = new FrameReader(edge.connect(requests, { signal }));
  const send = (frame: MessageInitShape<typeof ClientFrameSchema>) => requests.push({ frame });
  frames.acker = new Acker((pushId) => send({ kind: { case: "ack", value: { pushId } } }));
  send({ kind: { case: "hello", value: { protocolVersion: PROTOCOL_VERSION, accessToken: token, clientName: "waggle-ts-test" } } });
  const first = await frames.until("the Welcome", () => true);
  if (first.kind.case !== "welcome") throw new Error(`first frame is ${first.kind.case}, want welcome`);
  return {
    welcome: first.kind.value,
    frames,
    send,
    close: async () => {
      await frames.acker?.close();
      requests.end();
      return frames.end();
    },
  };
}

/**
 * A browser-style session: pushes from the server stream
 * EdgeService.Subscribe, acked by the policy of acks.ts with the unary
 * EdgeService.Ack.
 */
export interface Subscription {
  welcome: Welcome;
  frames: FrameReader;
  /** close acks what the session holds, then aborts the stream. */
  close(): Promise<void>;
}

/** subscribe opens EdgeService.Subscribe with clients (which carry the bearer token). */
export async function subscribe(clients: WaggleClients, clientName: string): Promise<Subscription> {
  const abort = new AbortController();
  const frames = new FrameReader(clients.edge.subscribe({ protocolVersion: PROTOCOL_VERSION, clientName }, { signal: abort.signal }));
  try {
    const first = await frames.until("the Welcome", () => true);
    if (first.kind.case !== "welcome") throw new Error(`first frame: ${show(first)}, want welcome`);
    const sessionId = first.kind.value.sessionId;
    frames.acker = new Acker((pushId) => clients.edge.ack({ sessionId, pushId }));
    return {
      welcome: first.kind.value,
      frames,
      close: async () => {
        await frames.acker?.close();
        abort.abort();
      },
    };
  } catch (e) {
    abort.abort();
    throw e;
  }
}

/** show renders a frame as protobuf JSON, for failure messages. */
export function show(f: ServerFrame): string {
  return toJsonString(ServerFrameSchema, f);
}

/** pushHasMessage says whether a frame is a Push carrying the message with this id. */
export function pushHasMessage(f: ServerFrame, messageId: string): boolean {
  return f.kind.case === "push" && f.kind.value.events.some((e) => e.kind.case === "message" && e.kind.value.messageId === messageId);
}

/**
 * waitDelivered waits until the message at seq shows deviceId as delivered:
 * the edge reports acknowledged pushes to the chat service about once a
 * second, and the sender reads them with MessageService.GetDeliveryState.
 */
export async function waitDelivered(sender: User, conversationId: string, seq: bigint, deviceId: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const state = await sender.clients.messages.getDeliveryState({ conversationId, seq });
    if (state.deliveries.some((d) => d.deliveredDeviceIds.includes(deviceId))) return;
    if (Date.now() > deadline) {
      throw new Error(`device ${deviceId} not reported as delivered for seq ${seq} after ${ms} ms: ${JSON.stringify(state.deliveries)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
