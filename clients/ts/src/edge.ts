// waggle.edge.v1: EdgeService, the client connection (Connect for native
// clients, Subscribe + Ack for browsers) and its frames.
export * from "../../../gen/ts/waggle/edge/v1/edge_pb.js";
