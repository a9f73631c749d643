// waggle.chat.v1: ConversationService, MessageService, events, and the
// internal DeliveryService and RelationService.
export * from "../../../gen/ts/waggle/chat/v1/conversation_pb.js";
export * from "../../../gen/ts/waggle/chat/v1/delivery_pb.js";
export * from "../../../gen/ts/waggle/chat/v1/event_pb.js";
export * from "../../../gen/ts/waggle/chat/v1/message_pb.js";
export * from "../../../gen/ts/waggle/chat/v1/relation_pb.js";
