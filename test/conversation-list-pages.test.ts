import { expect } from "chai";
import type { ConversationSummary } from "../src/protocol";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { SdkClients } from "./helpers/sdk";
import { useServerSuite } from "./helpers/serverSuite";
import { urlOf } from "./helpers/server";

/**
 * `conversation:list` in pages (limit / before / next), by id and by peer; and the SDK's
 * bounded chat list built on them (maxListed, loadMoreConversations, findDirect, a dropped
 * conversation coming back with the server's unread count and its ticks still moving).
 */
describe("conversation:list pages, and the SDK's bounded chat list", function () {
  this.timeout(60_000);
  const suite = useServerSuite();
  const url = () => urlOf(suite.server);
  const clients = new SdkClients();
  const devices: Device[] = [];
  afterEach(() => {
    clients.closeAll();
    devices.splice(0).forEach((d) => d.close());
  });
  const device = async (userId: string) => {
    const d = await new Device(url(), { userId }).connectSynced();
    devices.push(d);
    return d;
  };
  type Page = { conversations: ConversationSummary[]; hasMore: boolean; next: string | null };
  const list = async (d: Device, payload: object) => {
    const reply = await d.request("conversation:list", payload as never);
    expect(reply.ok, JSON.stringify(reply)).to.equal(true);
    return reply as unknown as Page;
  };

  /** `me` sends one message to each of `n` new peers, in order: the last peer is the most recently active. */
  async function withPeers(n: number): Promise<{ me: string; d: Device; peers: string[] }> {
    const me = uniqueId("lister");
    const d = await device(me);
    const peers = Array.from({ length: n }, (_, i) => uniqueId(`peer${i}`));
    for (const p of peers) {
      const r = await d.request("message:send", { clientMsgId: uniqueId("c"), to: p, content: `hi ${p}` });
      expect(r.ok).to.equal(true);
    }
    return { me, d, peers };
  }

  it("pages the whole list in its order: limit, hasMore, next as before; the last page ends with next null", async () => {
    const { d, peers } = await withPeers(7);
    const whole = await list(d, {});
    expect(whole.hasMore).to.equal(false);
    expect(whole.next).to.equal(null);
    expect(whole.conversations.map((c) => c.lastMessage?.content)).to.deep.equal([...peers].reverse().map((p) => `hi ${p}`));
    const seen: string[] = [];
    let before: string | undefined;
    const sizes: number[] = [];
    for (;;) {
      const page = await list(d, { limit: 3, ...(before ? { before } : {}) });
      sizes.push(page.conversations.length);
      seen.push(...page.conversations.map((c) => c.id));
      if (!page.hasMore) {
        expect(page.next).to.equal(null);
        break;
      }
      expect(page.next).to.be.a("string");
      before = page.next!;
    }
    expect(sizes).to.deep.equal([3, 3, 1]);
    expect(seen).to.deep.equal(whole.conversations.map((c) => c.id));
    // A page that ends exactly at the end of the list says so.
    const exact = await list(d, { limit: 7 });
    expect([exact.conversations.length, exact.hasMore, exact.next]).to.deep.equal([7, false, null]);
  });

  it("answers the caller's conversations by id or by peer, and nobody else's", async () => {
    const { me, d, peers } = await withPeers(3);
    const whole = await list(d, {});
    const [newest, , oldest] = whole.conversations;
    const byIds = await list(d, { conversationIds: [oldest!.id, newest!.id] });
    expect(byIds.conversations.map((c) => c.id)).to.deep.equal([newest!.id, oldest!.id]);
    const byPeer = await list(d, { peer: peers[1] });
    expect(byPeer.conversations.map((c) => c.members)).to.deep.equal([[me, peers[1]].sort()]);
    expect((await list(d, { peer: uniqueId("stranger") })).conversations).to.deep.equal([]);
    // Someone else asking for them by id learns nothing.
    const other = await device(uniqueId("other"));
    expect((await list(other, { conversationIds: whole.conversations.map((c) => c.id) })).conversations).to.deep.equal([]);
  });

  it("refuses a limit out of range, a cursor it did not give and ids that are not ids, changing nothing", async () => {
    const { d } = await withPeers(1);
    for (const payload of [
      { limit: 0 },
      { limit: 501 },
      { limit: 1.5 },
      { before: "not-a-cursor" },
      { before: Buffer.from("123/not-a-uuid").toString("base64url") },
      { conversationIds: ["x"] },
      { conversationIds: [] },
      { peer: "has space" },
    ]) {
      const reply = await d.request("conversation:list", payload as never);
      expect(reply, JSON.stringify(payload)).to.deep.include({ ok: false });
      expect((reply as { error: { code: string } }).error.code, JSON.stringify(payload)).to.equal("BAD_REQUEST");
    }
    expect((await list(d, {})).conversations).to.have.length(1);
  });

  it("the SDK holds maxListed conversations, loads more on demand, finds an older chat, and a dropped one comes back with its unread count", async () => {
    const { me, d, peers } = await withPeers(6);
    d.close();
    const phone = await clients.connected(url(), { userId: me, maxListed: 3 });
    expect(phone.conversations().map((c) => c.lastMessage?.content)).to.deep.equal(peers.slice(3).reverse().map((p) => `hi ${p}`));
    expect(phone.hasMoreConversations).to.equal(true);
    expect(await phone.loadMoreConversations(2)).to.have.length(5);
    expect(phone.hasMoreConversations).to.equal(true);
    // The oldest chat, not held: found by its peer.
    expect(phone.directWith(peers[0]!)).to.equal(undefined);
    const found = await phone.findDirect(peers[0]!);
    expect(found?.members).to.include(peers[0]);
    expect(phone.conversations()).to.have.length(5);

    // Two messages from a peer whose chat the list dropped: it comes back with unread 2.
    const quiet = await clients.connected(url(), { userId: me, maxListed: 2 });
    expect(quiet.directWith(peers[1]!)).to.equal(undefined);
    const peer = await device(peers[1]!);
    for (const text of ["back 1", "back 2"]) {
      expect((await peer.request("message:send", { clientMsgId: uniqueId("c"), to: me, content: text })).ok).to.equal(true);
    }
    await waitFor(() => quiet.directWith(peers[1]!)?.unread === 2, "the chat back, with 2 unread");
    expect(quiet.conversations()).to.have.length(2);
    expect(quiet.conversations()[0]!.lastMessage?.content).to.equal("back 2");
  });

  it("ticks of a message in a chat the list dropped still move to read", async () => {
    const { me, d, peers } = await withPeers(4);
    d.close();
    const phone = await clients.connected(url(), { userId: me, maxListed: 2 });
    const local = await phone.send({ to: peers[3]! }, "read this");
    await waitFor(() => phone.pending().length === 0, "stored");
    const chat = phone.directWith(peers[3]!)!.id;
    const id = phone.messages(chat).find((m) => m.clientMsgId === local.clientMsgId)!.id;
    // Two other chats become more recent: the list drops this one (conversations() reads
    // without using: directWith() would keep it in).
    for (const p of [peers[0]!, peers[1]!]) await phone.send({ to: p }, "newer");
    await waitFor(() => phone.pending().length === 0 && !phone.conversations().some((c) => c.id === chat), "dropped");
    const reader = await clients.connected(url(), { userId: peers[3]! });
    await waitFor(() => reader.directWith(me)?.unread === 2, "the reader's unread (the first hi, and this)");
    await reader.markRead(reader.directWith(me)!.id);
    await waitFor(() => phone.statusOf(id) === "read", "read on the sender's device");
  });
});
