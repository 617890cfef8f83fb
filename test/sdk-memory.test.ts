import { expect } from "chai";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { TicksClient } from "../src/client/TicksClient";
import { uniqueId } from "./helpers/device";
import { urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";

// A full GC without --expose-gc on the command line (the flag applies to new contexts).
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

describe("SDK memory: a closed TicksClient is released", function () {
  this.timeout(120_000);
  const suite = useServerSuite();

  it("200 clients that connect, sync, send and close are all garbage-collected", async () => {
    const url = urlOf(suite.server);
    let collected = 0;
    const registry = new FinalizationRegistry<number>(() => collected++);
    const a = uniqueId("mem-a");
    const b = uniqueId("mem-b");
    const N = 200;
    for (let i = 0; i < N; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, async (_, j) => {
          const client = new TicksClient({ url, userId: (i + j) % 2 ? a : b, deviceId: `d${i + j}`, socket: { reconnection: false } });
          registry.register(client, i + j);
          const synced = client.whenSynced();
          await client.connect();
          await synced;
          const local = await client.send({ to: (i + j) % 2 ? b : a }, `hello ${i + j}`);
          await new Promise<void>((resolve) => {
            const off = client.on("status", (c) => {
              if (c.clientMsgId === local.clientMsgId && c.status !== "pending") {
                off();
                resolve();
              }
            });
          });
          client.close();
        }),
      );
    }
    // Finalizers run on later turns: collect a few times, yielding in between.
    for (let k = 0; k < 20 && collected < N; k++) {
      gc();
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(collected, "closed clients still reachable").to.equal(N);
  });
});
