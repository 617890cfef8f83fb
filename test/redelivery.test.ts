import { expect } from "chai";
import { quiet, uniqueId, waitFor } from "./helpers/device";
import { useServerSuite } from "./helpers/serverSuite";

describe("periodic redelivery to connected devices", () => {
  const suite = useServerSuite({ REDELIVERY_AFTER_MS: "400", DELIVERY_ACK_TIMEOUT_MS: "200" });

  it("offers an unconfirmed live message again, while connected, until a device confirms it", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b, { autoAck: false }).connectSynced();
    const reply = await alice.request("message:send", { clientMsgId: "once", to: b, content: "are you there?" });
    if (!reply.ok) throw new Error(reply.error.message);
    await waitFor(() => bob.live.length >= 3, "three offers of the same message");
    expect(new Set(bob.live.map((m) => m.id))).to.deep.equal(new Set([reply.message.id]));
    expect(alice.statuses).to.have.length(0);

    bob.autoAck = true; // the device comes back to life and confirms the next offer
    await waitFor(() => alice.statuses.length === 1, "delivered status");
    const { rows } = await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1", [reply.message.id]);
    expect(rows[0].status).to.equal("delivered");
    const offers = bob.live.length;
    await quiet(1000);
    expect(bob.live.length, "no more offers once confirmed").to.equal(offers);
  });

  it("never redelivers to a device that has not finished its backlog", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    await alice.request("message:send", { clientMsgId: "m1", to: b, content: "waiting" });
    const bob = suite.device(b, { autoAck: false });
    await bob.connect();
    await waitFor(() => bob.backlogPages.length >= 1, "backlog page");
    await quiet(1000); // several redelivery rounds
    expect(bob.live).to.have.length(0);
  });
});
