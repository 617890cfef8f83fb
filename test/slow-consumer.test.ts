import { expect } from "chai";
import { uniqueId } from "./helpers/ids";
import { waitFor } from "./helpers/wait";
import { useServerSuite } from "./helpers/serverSuite";
import { userRoom } from "../src/transport/rooms";

const CONTENT = "x".repeat(4096);
const MAX_MESSAGES = 20_000; // 80 MB: far past the cap plus whatever the kernel buffers take

describe("slow consumer: MAX_SOCKET_BUFFER_BYTES", function () {
  this.timeout(120_000);
  const suite = useServerSuite({ MAX_SOCKET_BUFFER_BYTES: "65536", RATE_LIMIT_EVENTS_PER_SEC: "0" });

  it("disconnects a device that stops reading once its queue passes the cap; its messages then come from the backlog", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    const bob = await suite.device(b).connectSynced();
    const disconnects = async () => (await suite.server.metrics.slowConsumerDisconnects.get()).values[0]?.value ?? 0;
    const before = await disconnects();

    // The device stops reading its TCP socket: the kernel buffers fill, then the server's.
    const transport = bob.socket.io.engine.transport as unknown as { ws: { _socket: { pause(): void } } };
    transport.ws._socket.pause();

    const sent: string[] = [];
    let tripped = false;
    const sender = async (lane: number) => {
      for (let i = 0; !tripped && sent.length < MAX_MESSAGES; i++) {
        const reply = await alice.request("message:send", { clientMsgId: `slow-${lane}-${i}`, to: b, content: CONTENT });
        if (!reply.ok) throw new Error(reply.error.message);
        sent.push(reply.message.id);
        if (i % 50 === 0) tripped = (await disconnects()) > before;
      }
    };
    await Promise.all([0, 1, 2, 3].map(sender));
    expect(tripped, `disconnected within ${sent.length} messages of 4 KB`).to.equal(true);
    const rooms = suite.server.io.of("/").adapter.rooms;
    await waitFor(() => !rooms.has(userRoom(b)), "the server dropped the slow socket");
    // A few more while the device is away: they wait in the backlog too.
    for (let i = 0; i < 5; i++) {
      const reply = await alice.request("message:send", { clientMsgId: `after-${i}`, to: b, content: CONTENT });
      if (reply.ok) sent.push(reply.message.id);
    }
    const { rows } = await suite.pg.query(
      "SELECT count(*)::int AS n FROM message_delivery WHERE recipient_id = $1 AND status = 'sent'",
      [b],
    );
    expect(rows[0].n, "messages waiting for the device").to.be.greaterThan(5);
    bob.close();

    const back = await suite.device(b).connectSynced();
    const got = new Set([...bob.live.map((m) => m.id), ...back.received.map((m) => m.id)]);
    expect(sent.filter((id) => !got.has(id)), "sent but never received").to.deep.equal([]);
    expect(back.backlogPages.length, "backlog pages").to.be.greaterThan(0);
    const left = await suite.pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE recipient_id = $1 AND status = 'sent'", [b]);
    expect(left.rows[0].n, "still 'sent' after the backlog").to.equal(0);
    console.log(`      slow consumer: disconnected after ${sent.length - 5} messages of 4 KB; ${rows[0].n} came from the backlog`);
  });

  it("leaves a device that reads alone, even with pages larger than the cap", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a).connectSynced();
    for (let i = 0; i < 100; i++) await alice.request("message:send", { clientMsgId: `p${i}`, to: b, content: CONTENT });
    // One backlog page of 100 messages of 4 KB: ~420 KB in one packet, over the 64 KB cap.
    const bob = await suite.device(b).connectSynced();
    expect(bob.received).to.have.length(100);
    const live = await Promise.all(
      Array.from({ length: 200 }, (_, i) => alice.request("message:send", { clientMsgId: `l${i}`, to: b, content: CONTENT })),
    );
    await waitFor(() => bob.live.length === live.length, "every live message");
    expect(bob.socket.connected).to.equal(true);
  });
});
