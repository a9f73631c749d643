// waggle.presence.v1: PresenceService, and the internal
// SessionRegistryService.
export * from "../../../gen/ts/waggle/presence/v1/presence_pb.js";
export * from "../../../gen/ts/waggle/presence/v1/registry_pb.js";
