import { expect } from "chai";
import pg from "pg";
import type { AppendResult } from "../src/messaging/ports";
import { StorageUnavailableError } from "../src/protocol";
import type { BatchOutcome } from "../src/storage/GroupCommit";
import { appendIsolated } from "../src/storage/append/appendRetries";
import { uniqueId } from "./helpers/ids";
import { useMigratedDatabase } from "./helpers/migratedDatabase";
import { okValue as value, textRequest as text } from "./helpers/appendRequests";

/**
 * The write statement finds a retry by its idempotency key alone and the original is read
 * by that key afterwards (src/storage/append/write.ts), when the batch's new messages are
 * committed already: what happens to them when that read finds nothing, or fails.
 */
describe("retries answered after the write (store)", function () {
  this.timeout(30_000);
  const t = useMigratedDatabase();
  const options = () => ({ hot: t.hot });

  const stored = async (from: string, clientMsgId: string) =>
    (await t.pg.query(`SELECT message_id, content FROM messages WHERE from_user_id = $1 AND client_msg_id = $2`, [from, clientMsgId])).rows;

  it("a retry whose message is gone (its partition dropped by hand) is stored anew; the new messages beside it are stored once, duplicate: false", async () => {
    const [a, b, c] = ["a", "b", "c"].map(uniqueId) as [string, string, string];
    const lost = value((await appendIsolated(t.main, [text(a, b, uniqueId("c"), "lost")], options()))[0]).message;
    // What a dropped partition leaves: the idempotency key, without its message.
    await t.pg.query(`DELETE FROM message_delivery WHERE message_id = $1`, [lost.id]);
    await t.pg.query(`DELETE FROM messages WHERE message_id = $1`, [lost.id]);

    const batch = [text(a, c, uniqueId("c"), "new 1"), text(a, b, lost.clientMsgId, "again"), text(c, a, uniqueId("c"), "new 2")];
    const [first, retry, second] = (await appendIsolated(t.main, batch, options())).map(value);

    expect([first!.duplicate, retry!.duplicate, second!.duplicate]).to.deep.equal([false, false, false]);
    expect(retry!.message.id).to.not.equal(lost.id);
    expect(retry!.message.content).to.equal("again");
    for (const req of batch) expect(await stored(req.from, req.clientMsgId), req.content).to.have.length(1);
    expect((await stored(a, lost.clientMsgId))[0].content).to.equal("again");
  });

  it("when reading the originals fails, only the retries fail (UNAVAILABLE): the new messages of the batch are stored and answered", async () => {
    const [a, b] = ["a", "b"].map(uniqueId) as [string, string];
    const earlier = value((await appendIsolated(t.main, [text(a, b, uniqueId("c"), "earlier")], options()))[0]).message;
    const batch = [text(a, b, uniqueId("c"), "new"), text(a, b, earlier.clientMsgId, "retry")];
    // The database answers the write and then refuses the read of the originals (a connection lost
    // between the two): the one failure a real server cannot be told to make on cue.
    const query = pg.Client.prototype.query;
    pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
      const q = args[0] as { name?: string } | string;
      if (typeof q === "object" && q.name === "ticks_find_stored") return Promise.reject(new Error("Connection terminated unexpectedly"));
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as typeof query;
    let outcomes: BatchOutcome<AppendResult>[];
    try {
      outcomes = await appendIsolated(t.main, batch, options());
    } finally {
      pg.Client.prototype.query = query;
    }
    const [fresh, retry] = outcomes;
    expect(value(fresh).duplicate).to.equal(false);
    expect(value(fresh).message.seq).to.equal(2);
    expect(retry!.ok).to.equal(false);
    expect(!retry!.ok && retry!.error).to.be.instanceOf(StorageUnavailableError);
    expect(await stored(a, batch[0]!.clientMsgId)).to.have.length(1);
    expect(await stored(a, earlier.clientMsgId)).to.deep.equal([{ message_id: earlier.id, content: "earlier" }]);

    // Sent again, the retry gets its original.
    const again = value((await appendIsolated(t.main, [batch[1]!], options()))[0]);
    expect(again.duplicate).to.equal(true);
    expect(again.message).to.deep.include({ id: earlier.id, content: "earlier", seq: 1 });
  });
});
