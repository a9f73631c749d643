import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";

import { AccountService } from "../../../gen/ts/waggle/account/v1/account_pb.js";
import { ConversationService } from "../../../gen/ts/waggle/chat/v1/conversation_pb.js";
import { MessageService } from "../../../gen/ts/waggle/chat/v1/message_pb.js";
import { ContactService } from "../../../gen/ts/waggle/contact/v1/contact_pb.js";
import { EdgeService } from "../../../gen/ts/waggle/edge/v1/edge_pb.js";
import { PresenceService } from "../../../gen/ts/waggle/presence/v1/presence_pb.js";

/** The edge protocol version this package speaks (Hello.protocol_version). */
export const PROTOCOL_VERSION = 1;

/**
 * bearer returns an interceptor that sends `Authorization: Bearer <token>` on
 * every call. Pass a function to pick up refreshed tokens.
 */
export function bearer(token: string | (() => string | Promise<string>)): Interceptor {
  return (next) => async (req) => {
    const t = typeof token === "function" ? await token() : token;
    req.header.set("Authorization", `Bearer ${t}`);
    return next(req);
  };
}

/** The client-facing services of Waggle, all on one transport. */
export interface WaggleClients {
  accounts: Client<typeof AccountService>;
  conversations: Client<typeof ConversationService>;
  messages: Client<typeof MessageService>;
  contacts: Client<typeof ContactService>;
  presence: Client<typeof PresenceService>;
  edge: Client<typeof EdgeService>;
}

/**
 * createWaggleClients makes a client of every client-facing service on one
 * transport: createConnectTransport or createGrpcTransport from
 * @connectrpc/connect-node, or createConnectTransport / createGrpcWebTransport
 * from @connectrpc/connect-web in browsers (which cannot call
 * EdgeService.Connect: use Subscribe and Ack there). Give the transport a
 * `bearer(token)` interceptor for calls that need a logged-in user.
 */
export function createWaggleClients(transport: Transport): WaggleClients {
  return {
    accounts: createClient(AccountService, transport),
    conversations: createClient(ConversationService, transport),
    messages: createClient(MessageService, transport),
    contacts: createClient(ContactService, transport),
    presence: createClient(PresenceService, transport),
    edge: createClient(EdgeService, transport),
  };
}
