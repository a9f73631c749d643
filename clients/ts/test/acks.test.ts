// The ack policy of test/acks.ts on a mocked clock. Needs no server.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Acker } from "./acks.js";

/** A push (its id) at a time, and an ack (the id it covers) at a time, in ms. */
type At = [id: bigint, ms: number];

function burst(n: number, ms: number): At[] {
  return Array.from({ length: n }, (_, i): At => [BigInt(i + 1), ms]);
}

const cases: { name: string; pushes: At[]; want: At[] }[] = [
  { name: "a lone push is acked after 500 ms", pushes: [[1n, 0]], want: [[1n, 500]] },
  { name: "64 pushes in a burst get one ack at once", pushes: burst(64, 0), want: [[64n, 0]] },
  {
    name: "the push after an ack by count waits for a new delay",
    pushes: [...burst(64, 0), [65n, 100]],
    want: [[64n, 0], [65n, 600]],
  },
  { name: "pushes within the delay share one ack of the highest", pushes: [[1n, 0], [2n, 50], [3n, 499]], want: [[3n, 500]] },
  { name: "the delay runs from the oldest unacked push", pushes: [[1n, 0], [2n, 600], [3n, 700]], want: [[1n, 500], [3n, 1100]] },
  {
    name: "a resent push is acked again, by the highest id held",
    pushes: [[1n, 0], [2n, 10_000], [1n, 10_000]],
    want: [[1n, 500], [2n, 10_500]],
  },
  { name: "a push without an id needs no ack", pushes: [[0n, 0]], want: [] },
];

for (const c of cases) {
  test(`ack policy: ${c.name}`, (t) => {
    t.mock.timers.enable({ apis: ["setTimeout"] });
    let now = 0;
    const acks: At[] = [];
    const acker = new Acker((id) => acks.push([id, now]));
    const end = Math.max(...c.pushes.map(([, ms]) => ms)) + 1000;
    for (; now <= end; now++) {
      if (now > 0) t.mock.timers.tick(1); // fires what is due at now
      for (const [id, ms] of c.pushes) if (ms === now) acker.add(id);
    }
    assert.deepEqual(acks, c.want);
  });
}

test("ack policy: close acks what is held, then nothing more", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const acks: bigint[] = [];
  const acker = new Acker((id) => acks.push(id));
  acker.add(1n);
  acker.add(2n);
  await acker.close();
  assert.deepEqual(acks, [2n]);
  acker.add(3n);
  t.mock.timers.tick(1000);
  assert.deepEqual(acks, [2n], "acked after close");
});

test("ack policy: a failed ack is dropped, and the next one covers it", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const acks: bigint[] = [];
  const acker = new Acker(async (id) => {
    acks.push(id);
    if (id === 1n) throw new Error("edge unreachable");
  });
  acker.add(1n);
  t.mock.timers.tick(500);
  acker.add(2n);
  t.mock.timers.tick(500);
  await acker.close();
  assert.deepEqual(acks, [1n, 2n]);
});
