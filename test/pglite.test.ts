import { expect } from "chai";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startTicks, type RunningTicks } from "../src/main";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { testConfig, urlOf } from "./helpers/server";
import { expectOk } from "./helpers/replies";
import { absolute, http, upload } from "./helpers/media";

/** The `npm start` default: no DATABASE_URL, an embedded PGlite database on disk. */
describe("embedded PGlite (no DATABASE_URL)", function () {
  this.timeout(60_000);
  let dataDir: string;
  let server: RunningTicks | undefined;
  const devices: Device[] = [];
  const start = () => startTicks(testConfig({ DATA_DIR: dataDir, AUTH_MODE: "dev" }));

  before(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), "ticks-pglite-"));
  });
  afterEach(async () => {
    devices.splice(0).forEach((d) => d.close());
    await server?.stop();
    server = undefined;
  });
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  it("migrates, stores, delivers, groups, reads, edits, reacts and deletes; the data survives a restart", async () => {
    server = await start();
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const c = uniqueId("carol");
    const alice = await new Device(urlOf(server), { userId: a }).connectSynced();
    const bob = await new Device(urlOf(server), { userId: b }).connectSynced();
    devices.push(alice, bob);

    const sent = await alice.request("message:send", { clientMsgId: "k1", to: b, content: "hello from PGlite" });
    if (!sent.ok) throw new Error(sent.error.message);
    await waitFor(() => bob.live.length === 1, "live message");
    await waitFor(() => alice.statuses.length === 1, "delivered status");
    const dup = await alice.request("message:send", { clientMsgId: "k1", to: b, content: "again" });
    expectOk(dup);
    expect(dup.duplicate, "answered as a duplicate").to.equal(true);
    expect(dup.message.id).to.equal(sent.message.id);
    expect(await bob.request("message:read", { messageIds: [sent.message.id] })).to.deep.equal({ ok: true, updated: 1 });

    const group = await alice.request("group:create", { title: "pglite group", members: [b, c] });
    expectOk(group);
    const list = await alice.request("conversation:list", {});
    expectOk(list);
    expect(list.conversations.map((x) => x.kind).sort()).to.deep.equal(["direct", "group"]);
    const presence = await alice.request("presence:subscribe", { userIds: [b, c] });
    expectOk(presence);
    expect(presence.presence.map((p) => p.online)).to.deep.equal([true, false]);
    // A message for offline carol waits in the database.
    const toCarol = await alice.request("message:send", { clientMsgId: "k2", to: c, content: "for later" });
    expectOk(toCarol);
    // Edits, reactions and deletes: the same one write statement, on PGlite too.
    const fix = await alice.request("message:edit", { clientMsgId: "k3", messageId: toCarol.message.id, content: "for later!" });
    expect(fix.ok && fix.message.kind).to.equal("edit");
    const like = await bob.request("message:react", { clientMsgId: "k4", messageId: sent.message.id, emoji: "👍" });
    expect(like.ok && like.message.kind).to.equal("reaction");
    const gone = await alice.request("message:delete", { clientMsgId: "k5", messageId: sent.message.id });
    expect(gone.ok && gone.message.content).to.equal("");
    const direct = await bob.request("message:history", { conversationId: sent.message.conversationId });
    expect(direct.ok && direct.messages.map((m) => [m.kind, m.content])).to.deep.equal([
      ["text", ""],
      ["reaction", ""],
      ["delete", ""],
    ]);

    // Membership changes and a group send after them (the append statement's membership check).
    const removal = await alice.request("group:remove", { clientMsgId: "k6", conversationId: group.conversationId, userId: c });
    expect(removal.ok && removal.message.group?.action).to.equal("remove");
    const toGroup = await alice.request("message:send", { clientMsgId: "k7", conversationId: group.conversationId, content: "no carol" });
    expectOk(toGroup);
    await waitFor(() => bob.live.some((m) => m.id === toGroup.message.id), "bob gets the group message");

    devices.splice(0).forEach((d) => d.close());
    await server.stop();
    server = await start();
    const carol = await new Device(urlOf(server), { userId: c }).connectSynced();
    devices.push(carol);
    // Carol gets the entry that removed her, and not the group message stored after it.
    expect(carol.received.map((m) => [m.kind, m.content])).to.deep.equal([
      ["text", "for later!"],
      ["edit", "for later!"],
      ["group", ""],
    ]);
    expect(carol.received[0]!.editedAt).to.equal(fix.ok ? fix.message.createdAt : "");
  });

  it("media on the default setup (disk store under DATA_DIR): upload, send, download, delete for everyone, sweep", async () => {
    server = await start();
    const [a, b] = [uniqueId("alice"), uniqueId("bob")];
    const alice = await new Device(urlOf(server), { userId: a }).connectSynced();
    devices.push(alice);
    const bytes = Buffer.from("a photo on PGlite");
    const mediaId = await upload(alice, urlOf(server), bytes, "image/webp");
    const sent = await alice.request("message:send", { clientMsgId: uniqueId("m"), to: b, content: "", media: { mediaId, width: 3 } });
    expectOk(sent);
    expect(sent.message.media).to.deep.include({ mediaId, mime: "image/webp", size: bytes.length, width: 3, height: null });
    const link = await alice.request("media:url", { mediaId });
    expectOk(link);
    expect((await http("GET", absolute(link.url, urlOf(server)))).body.equals(bytes)).to.equal(true);
    const history = await alice.request("message:history", { conversationId: sent.message.conversationId });
    expectOk(history);
    expect(history.messages[0]!.media?.mediaId).to.equal(mediaId);
    expectOk(await alice.request("message:delete", { clientMsgId: uniqueId("d"), messageId: sent.message.id }));
    await server.sweeper.sweepNow();
    expect(existsSync(path.join(dataDir, "media", mediaId.slice(-2), mediaId))).to.equal(false);
  });
});
