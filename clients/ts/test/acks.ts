// The recommended ack policy (docs/protocol.md §6), as the Go SDK follows it
// (client/ack.go): ack the highest push_id applied, or held for gap repair,
// once 500 ms have passed since the oldest unacked push arrived, or at once
// when 64 pushes are unacked. Reading an ack costs the edge about as much as
// writing a push; acks are cumulative, and the edge resends only after 10 s
// without one, so the delay causes no resends.

/** How long after the oldest unacked push arrived a session acks. */
export const ACK_DELAY_MS = 500;
/** How many unacked pushes make a session ack at once. */
export const ACK_EVERY = 64;

/**
 * Acker batches one session's acks. send delivers one cumulative ack: an
 * `ack` frame on EdgeService.Connect, or the unary EdgeService.Ack of a
 * Subscribe session.
 */
export class Acker {
  private highest = 0n;
  private unacked = 0;
  private timer?: ReturnType<typeof setTimeout>;
  private closed = false;

  constructor(
    private readonly send: (pushId: bigint) => unknown,
    private readonly delayMs = ACK_DELAY_MS,
    private readonly every = ACK_EVERY,
  ) {}

  /** add counts a push the client has applied or holds (push_id 0 needs no ack). */
  add(pushId: bigint): void {
    if (this.closed || pushId === 0n) return;
    if (pushId > this.highest) this.highest = pushId;
    if (++this.unacked >= this.every) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.delayMs);
  }

  /** close sends the last ack, if anything is unacked, and stops acking: call it before closing the stream. */
  close(): Promise<void> {
    const last = this.flush();
    this.closed = true;
    return last;
  }

  private async flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.unacked === 0) return;
    this.unacked = 0;
    try {
      await this.send(this.highest);
    } catch {
      // Best effort: the stream is gone, or the edge resends after 10 s
      // and the next ack covers it.
    }
  }
}
