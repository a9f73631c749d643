// waggle.account.v1: AccountService (register, log in, tokens, profiles).
export * from "../../../gen/ts/waggle/account/v1/account_pb.js";
