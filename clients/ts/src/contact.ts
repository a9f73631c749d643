// waggle.contact.v1: ContactService.
export * from "../../../gen/ts/waggle/contact/v1/contact_pb.js";
