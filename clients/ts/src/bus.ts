// waggle.bus.v1: the envelopes services publish to edges (internal).
export * from "../../../gen/ts/waggle/bus/v1/bus_pb.js";
