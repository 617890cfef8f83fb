import { expect } from "chai";
import { uniqueId } from "./helpers/device";
import { expectOk, okReply } from "./helpers/replies";
import { useServerSuite } from "./helpers/serverSuite";

/**
 * The protocol: "A group message's recipients are the members, other than the sender, at
 * the time it was stored". Members who join or leave afterwards change nothing in its
 * message:info (the SDK's own group rule uses today's members; info() is the exact list).
 */
describe("message:info of a group message after its members changed", function () {
  this.timeout(60_000);
  const suite = useServerSuite();

  it("lists the members when it was stored: a later addition is not there, a later removal still is", async () => {
    const [a, b, c, d] = [uniqueId("alice"), uniqueId("bob"), uniqueId("carol"), uniqueId("dave")];
    const alice = await suite.device(a).connectSynced();
    const group = okReply(await alice.request("group:create", { title: "g", members: [b, c] })).conversationId;
    const before = await alice.send({ conversationId: group }, "before the changes");

    expectOk(await alice.request("group:add", { clientMsgId: uniqueId("add"), conversationId: group, userIds: [d] }));
    expectOk(await alice.request("group:remove", { clientMsgId: uniqueId("rm"), conversationId: group, userId: c }));
    const after = await alice.send({ conversationId: group }, "after the changes");

    const infoBefore = okReply(await alice.request("message:info", { messageId: before.id }));
    expect(infoBefore.recipients.map((r) => r.userId).sort()).to.deep.equal([b, c].sort());
    const infoAfter = okReply(await alice.request("message:info", { messageId: after.id }));
    expect(infoAfter.recipients.map((r) => r.userId).sort()).to.deep.equal([b, d].sort());
    for (const r of [...infoBefore.recipients, ...infoAfter.recipients]) {
      expect(r).to.deep.include({ status: "sent", deliveredAt: null, readAt: null });
    }
  });
});
