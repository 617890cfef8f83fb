import { expect } from "chai";
import { v4 as uuidv4 } from "uuid";
import type { ErrorCode } from "../src/protocol";
import type { RunningTicks } from "../src/main";
import { Device, quiet, uniqueId, waitFor } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";
import { expectOk } from "./helpers/replies";

type Case = [label: string, args: unknown[]];
type Counts = Record<string, number>;

/** Payloads that are not an object at all; `args` are what goes before the callback. */
const NON_OBJECTS: Case[] = [
  ["a string", ["hello"]],
  ["a number", [42]],
  ["a boolean", [true]],
  ["null", [null]],
  ["an empty array", [[]]],
  ["an array holding an object", [[{}]]],
  ["no payload, only a callback", []],
];

const uuids = (n: number) => Array.from({ length: n }, () => uuidv4());
const ids = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);

function describeReply(reply: unknown): string {
  return JSON.stringify(reply)?.slice(0, 200) ?? String(reply);
}

/** What went wrong, or null when `reply` is `{ ok: false, error: { code, message } }`. */
function errMismatch(reply: unknown, code: ErrorCode): string | null {
  const r = reply as { ok?: unknown; error?: { code?: unknown; message?: unknown } } | null;
  if (r && r.ok === false && r.error?.code === code && typeof r.error.message === "string") return null;
  return `expected ${code}, got ${describeReply(reply)}`;
}

describe("bad input", () => {
  const suite = useServerSuite();
  let aliceId: string, bobId: string, carolId: string;
  let alice: Device, bob: Device, carol: Device;
  /** alice ↔ bob, and a group of alice + bob (carol is in neither). */
  let direct: string, group: string;
  /** A message from bob to alice. */
  let toAlice: string;

  const device = async (userId: string, autoAck = true) => {
    // Set up once for every case (the suite's own devices close after each test).
    const d = suite.suiteDevice(userId, { autoAck });
    return d.connectSynced();
  };

  const counts = async (): Promise<Counts> => {
    const { rows } = await suite.pg.query(`SELECT
      (SELECT count(*)::int FROM messages) AS messages,
      (SELECT count(*)::int FROM conversations) AS conversations,
      (SELECT count(*)::int FROM conversation_members) AS members,
      (SELECT count(*)::int FROM message_delivery) AS deliveries,
      (SELECT count(*)::int FROM message_delivery WHERE status = 'read') AS read,
      (SELECT count(*)::int FROM users) AS users`);
    return rows[0];
  };

  /** Sends every case from `from` and collects the ones not answered with `code`. */
  async function expectAll(from: Device, event: string, cases: Case[], code: ErrorCode = "BAD_REQUEST"): Promise<void> {
    const wrong: string[] = [];
    for (const [label, args] of cases) {
      let reply: unknown;
      try {
        reply = await from.raw(event, ...args);
      } catch (err) {
        reply = `no answer (${(err as Error).message})`;
      }
      const mismatch = errMismatch(reply, code);
      if (mismatch) wrong.push(`${event} with ${label}: ${mismatch}`);
    }
    expect(wrong, `${event}: answers other than ${code}`).to.deep.equal([]);
    expect(from.socket.connected, `${event}: the socket stayed connected`).to.equal(true);
  }

  /** The server still stores a normal message from `from` (to a fresh, offline user). */
  async function stillServes(from: Device): Promise<void> {
    const to = uniqueId("ok-to");
    const reply = await from.request("message:send", { clientMsgId: uuidv4(), to, content: "still fine" });
    if (!reply.ok) expect.fail(`a normal send failed: ${reply.error.code} ${reply.error.message}`);
    const { rows } = await suite.pg.query("SELECT to_user_id, content FROM messages WHERE message_id = $1", [reply.message.id]);
    expect(rows).to.deep.equal([{ to_user_id: to, content: "still fine" }]);
  }

  before(async () => {
    aliceId = uniqueId("alice");
    bobId = uniqueId("bob");
    carolId = uniqueId("carol");
    alice = await device(aliceId);
    bob = await device(bobId);
    carol = await device(carolId);
    const first = await alice.request("message:send", { clientMsgId: uuidv4(), to: bobId, content: "hello bob" });
    if (!first.ok) throw new Error(first.error.message);
    direct = first.message.conversationId;
    const made = await alice.request("group:create", { title: "alice+bob", members: [bobId] });
    if (!made.ok) throw new Error(made.error.message);
    group = made.conversationId;
    const back = await bob.request("message:send", { clientMsgId: uuidv4(), to: aliceId, content: "hello alice" });
    if (!back.ok) throw new Error(back.error.message);
    toAlice = back.message.id;
  });

  describe("BAD_REQUEST, and nothing stored, for every client→server event", () => {
    let baseline: Counts;
    beforeEach(async () => {
      baseline = await counts();
    });
    afterEach(async function () {
      if (this.currentTest?.state !== "passed") return;
      expect(await counts(), "rows after the bad inputs").to.deep.equal(baseline);
      await stillServes(alice);
    });

    it("message:send", async () => {
      const ok = { clientMsgId: uuidv4(), to: bobId, content: "x" };
      await expectAll(alice, "message:send", [
        ...NON_OBJECTS,
        // wrong field types
        ["a numeric clientMsgId", [{ ...ok, clientMsgId: 42 }]],
        ["a null clientMsgId", [{ ...ok, clientMsgId: null }]],
        ["an object clientMsgId", [{ ...ok, clientMsgId: { id: "x" } }]],
        ["a numeric content", [{ ...ok, content: 42 }]],
        ["a null content", [{ ...ok, content: null }]],
        ["an array content", [{ ...ok, content: ["hi"] }]],
        ["an object content", [{ ...ok, content: { text: "hi" } }]],
        ["a numeric to", [{ ...ok, to: 42 }]],
        ["an array to", [{ ...ok, to: [bobId] }]],
        ["a numeric conversationId", [{ clientMsgId: uuidv4(), conversationId: 42, content: "x" }]],
        ["an object conversationId", [{ clientMsgId: uuidv4(), conversationId: { id: direct }, content: "x" }]],
        // missing required fields
        ["no clientMsgId", [{ to: bobId, content: "x" }]],
        ["no content", [{ clientMsgId: uuidv4(), to: bobId }]],
        ["an empty object", [{}]],
        // out of range
        ["an empty clientMsgId", [{ ...ok, clientMsgId: "" }]],
        ["a 65-char clientMsgId", [{ ...ok, clientMsgId: "c".repeat(65) }]],
        ["a clientMsgId with a space", [{ ...ok, clientMsgId: "has space" }]],
        ["a clientMsgId with a slash", [{ ...ok, clientMsgId: "a/b" }]],
        ["a clientMsgId with a #", [{ ...ok, clientMsgId: "a#b" }]],
        ["a clientMsgId with an emoji", [{ ...ok, clientMsgId: "id😀" }]],
        ["a clientMsgId with a newline", [{ ...ok, clientMsgId: "a\nb" }]],
        ["empty content", [{ ...ok, content: "" }]],
        ["an empty to", [{ ...ok, to: "" }]],
        ["a to with a space", [{ ...ok, to: "bob smith" }]],
        ["a 65-char to", [{ ...ok, to: "b".repeat(65) }]],
        ["a non-UUID conversationId", [{ clientMsgId: uuidv4(), conversationId: "not-a-uuid", content: "x" }]],
        ["a truncated UUID", [{ clientMsgId: uuidv4(), conversationId: direct.slice(0, -1), content: "x" }]],
        ["both to and conversationId", [{ ...ok, conversationId: direct }]],
        ["neither to nor conversationId", [{ clientMsgId: uuidv4(), content: "x" }]],
      ]);
      // The boundaries are accepted: a 64-char clientMsgId with every allowed character class.
      const longest = `Az09._:-${uuidv4().replace(/-/g, "")}`.padEnd(64, "z");
      const reply = await alice.request("message:send", { clientMsgId: longest, to: uniqueId("edge"), content: "edge" });
      expectOk(reply);
      baseline.messages += 1;
      baseline.conversations += 1;
      baseline.members += 2;
      baseline.deliveries += 1;
      baseline.users += 1;
    });

    it("message:read", async () => {
      await expectAll(alice, "message:read", [
        ...NON_OBJECTS,
        ["no messageIds", [{}]],
        ["a string messageIds", [{ messageIds: toAlice }]],
        ["a numeric messageIds", [{ messageIds: 42 }]],
        ["a null messageIds", [{ messageIds: null }]],
        ["an object messageIds", [{ messageIds: { 0: toAlice } }]],
        ["no ids", [{ messageIds: [] }]],
        ["501 ids", [{ messageIds: uuids(501) }]],
        ["a numeric id", [{ messageIds: [42] }]],
        ["a null id", [{ messageIds: [null] }]],
        ["a non-UUID id", [{ messageIds: ["not-a-uuid"] }]],
        // A valid id the caller may read, next to a bad one: the whole request is refused.
        ["a real id next to a non-UUID one", [{ messageIds: [toAlice, "not-a-uuid"] }]],
        ["a real id next to a number", [{ messageIds: [toAlice, 7] }]],
      ]);
      const { rows } = await suite.pg.query("SELECT status FROM message_delivery WHERE message_id = $1", [toAlice]);
      expect(rows[0].status).to.not.equal("read");
      // 500 ids is the limit, and ids nobody sent are ignored.
      const reply = await alice.request("message:read", { messageIds: uuids(500) });
      expect(reply).to.deep.equal({ ok: true, updated: 0 });
    });

    it("message:history", async () => {
      const ok = { conversationId: direct };
      await expectAll(alice, "message:history", [
        ...NON_OBJECTS,
        ["no conversationId", [{ limit: 10 }]],
        ["a numeric conversationId", [{ conversationId: 42 }]],
        ["a null conversationId", [{ conversationId: null }]],
        ["a non-UUID conversationId", [{ conversationId: "not-a-uuid" }]],
        ["limit 0", [{ ...ok, limit: 0 }]],
        ["limit 101", [{ ...ok, limit: 101 }]],
        ["limit -1", [{ ...ok, limit: -1 }]],
        ["limit 1.5", [{ ...ok, limit: 1.5 }]],
        ["a string limit", [{ ...ok, limit: "10" }]],
        ["beforeSeq -1", [{ ...ok, beforeSeq: -1 }]],
        ["beforeSeq 1.5", [{ ...ok, beforeSeq: 1.5 }]],
        ["a string beforeSeq", [{ ...ok, beforeSeq: "2" }]],
        ["afterSeq -1", [{ ...ok, afterSeq: -1 }]],
        ["a boolean afterSeq", [{ ...ok, afterSeq: true }]],
        ["an object afterSeq", [{ ...ok, afterSeq: {} }]],
      ]);
      // The boundaries are accepted.
      for (const limit of [1, 100]) {
        const reply = await alice.request("message:history", { conversationId: direct, limit });
        if (!reply.ok) expect.fail(`limit ${limit}: ${reply.error.code}`);
        expect(reply.messages.length).to.be.within(1, limit);
      }
    });

    it("conversation:list", async () => {
      await expectAll(alice, "conversation:list", NON_OBJECTS);
      // {} is the request; unknown fields are ignored.
      for (const payload of [{}, { extra: 1 }]) {
        const reply = (await alice.raw("conversation:list", payload)) as { ok: boolean; conversations?: { id: string }[] };
        expectOk(reply);
        expect(reply.conversations?.map((c) => c.id)).to.include.members([direct, group]);
      }
    });

    it("group:create", async () => {
      const ok = { title: "a group", members: [bobId] };
      await expectAll(alice, "group:create", [
        ...NON_OBJECTS,
        ["no title", [{ members: [bobId] }]],
        ["a numeric title", [{ ...ok, title: 42 }]],
        ["a null title", [{ ...ok, title: null }]],
        ["an empty title", [{ ...ok, title: "" }]],
        ["a 1000-char title", [{ ...ok, title: "t".repeat(1000) }]],
        ["no members", [{ title: "g" }]],
        ["a string members", [{ ...ok, members: bobId }]],
        ["a null members", [{ ...ok, members: null }]],
        ["an empty members", [{ ...ok, members: [] }]],
        ["a numeric member", [{ ...ok, members: [42] }]],
        ["a member id with a space", [{ ...ok, members: ["bob smith"] }]],
        ["a good member next to a bad one", [{ ...ok, members: [uniqueId("m"), "bad id"] }]],
        ["only the creator (1 member in all)", [{ ...ok, members: [aliceId] }]],
        ["1025 members beside the creator", [{ ...ok, members: ids(uniqueId("m"), 1025) }]],
        ["1024 members beside the creator (1025 in all, past GROUP_MAX_MEMBERS)", [{ ...ok, members: ids(uniqueId("m"), 1024) }]],
      ]);
      // A group under the limit (GROUP_MAX_MEMBERS, 1024 in all by default) is created.
      const members = ids(uniqueId("m"), 255);
      const reply = await alice.request("group:create", { title: "full house", members });
      if (!reply.ok) expect.fail(`256 members: ${reply.error.code} ${reply.error.message}`);
      const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM conversation_members WHERE conversation_id = $1", [
        reply.conversationId,
      ]);
      expect(rows[0].n).to.equal(256);
      baseline.conversations += 1;
      baseline.members += 256;
      baseline.users += 255;
    });

    it("typing", async () => {
      const mark = bob.events.length;
      await expectAll(alice, "typing", [
        ...NON_OBJECTS,
        ["no conversationId", [{ typing: true }]],
        ["a numeric conversationId", [{ conversationId: 42, typing: true }]],
        ["a non-UUID conversationId", [{ conversationId: "not-a-uuid", typing: true }]],
        ["no typing", [{ conversationId: direct }]],
        ["a string typing", [{ conversationId: direct, typing: "yes" }]],
        ["a numeric typing", [{ conversationId: direct, typing: 1 }]],
        ["a null typing", [{ conversationId: direct, typing: null }]],
      ]);
      await quiet();
      expect(bob.events.slice(mark).filter((e) => e.event === "typing")).to.deep.equal([]);
      // A good one is relayed (so the silence above meant something).
      expect(await alice.request("typing", { conversationId: direct, typing: true })).to.deep.equal({ ok: true });
      await waitFor(() => bob.events.slice(mark).some((e) => e.event === "typing"), "typing relayed to bob");
    });

    it("presence:subscribe", async () => {
      const watched = uniqueId("watched");
      await expectAll(alice, "presence:subscribe", [
        ...NON_OBJECTS,
        ["no userIds", [{}]],
        ["a string userIds", [{ userIds: watched }]],
        ["a null userIds", [{ userIds: null }]],
        ["no ids", [{ userIds: [] }]],
        ["501 ids", [{ userIds: ids(uniqueId("p"), 501) }]],
        ["a numeric id", [{ userIds: [42] }]],
        ["an id with a space", [{ userIds: ["bob smith"] }]],
        // Refused as a whole: no subscription to the valid id either.
        ["a good id next to a bad one", [{ userIds: [watched, "bad id"] }]],
      ]);
      const mark = alice.events.length;
      const w = await device(watched);
      await quiet();
      const seen = alice.events.slice(mark).filter((e) => e.event === "presence");
      expect(seen, "presence events after a refused subscription").to.deep.equal([]);
      w.close();
      // 500 ids is the limit.
      const reply = await alice.request("presence:subscribe", { userIds: ids(uniqueId("p"), 500) });
      if (!reply.ok) expect.fail(`500 ids: ${reply.error.code}`);
      expect(reply.presence).to.have.length(500);
      baseline.users += 1; // the watched user connected
    });
  });

  describe("content length", () => {
    let small: RunningTicks;
    let sender: Device;
    before(async () => {
      small = await startServer(suite.db.url, { MAX_CONTENT_LENGTH: "10" });
      sender = new Device(urlOf(small), { userId: uniqueId("small") });
      await sender.connectSynced();
    });
    after(async () => {
      sender.close();
      await small.stop();
    });

    it("counts MAX_CONTENT_LENGTH in code points: 10 emoji fit, 11 are TOO_LARGE", async () => {
      const to = uniqueId("to");
      const fits = "😀".repeat(10);
      const reply = await sender.request("message:send", { clientMsgId: uuidv4(), to, content: fits });
      if (!reply.ok) expect.fail(`10 emoji: ${reply.error.code} ${reply.error.message}`);
      const { rows } = await suite.pg.query("SELECT content FROM messages WHERE message_id = $1", [reply.message.id]);
      expect(rows).to.deep.equal([{ content: fits }]);
      const ascii = await sender.request("message:send", { clientMsgId: uuidv4(), to, content: "0123456789" });
      expectOk(ascii);

      const baseline = await counts();
      await expectAll(
        sender,
        "message:send",
        [
          ["11 emoji", [{ clientMsgId: uuidv4(), to, content: "😀".repeat(11) }]],
          ["11 ASCII characters", [{ clientMsgId: uuidv4(), to, content: "01234567890" }]],
          ["10 emoji and a letter", [{ clientMsgId: uuidv4(), to, content: `${fits}a` }]],
          ["20,000 characters", [{ clientMsgId: uuidv4(), to, content: "z".repeat(20_000) }]],
          [
            "11 characters to a conversation",
            [{ clientMsgId: uuidv4(), conversationId: reply.message.conversationId, content: "x".repeat(11) }],
          ],
        ],
        "TOO_LARGE",
      );
      expect(await counts()).to.deep.equal(baseline);
      // The refused clientMsgId is free: nothing was stored under it.
      const clientMsgId = uuidv4();
      await sender.raw("message:send", { clientMsgId, to, content: "x".repeat(11) });
      const retry = await sender.request("message:send", { clientMsgId, to, content: "short" });
      if (!retry.ok) expect.fail(retry.error.message);
      expect(retry.duplicate).to.equal(false);
      expect(retry.message.content).to.equal("short");
    });

    it("defaults to 4096 code points", async () => {
      const to = uniqueId("to");
      const fits = await alice.request("message:send", { clientMsgId: uuidv4(), to, content: "😀".repeat(4096) });
      expectOk(fits);
      const baseline = await counts();
      await expectAll(alice, "message:send", [["4097 emoji", [{ clientMsgId: uuidv4(), to, content: "😀".repeat(4097) }]]], "TOO_LARGE");
      expect(await counts()).to.deep.equal(baseline);
    });
  });

  describe("conversations that do not exist or are not the caller's", () => {
    let baseline: Counts;
    beforeEach(async () => {
      baseline = await counts();
    });
    afterEach(async function () {
      if (this.currentTest?.state !== "passed") return;
      expect(await counts(), "rows after the refusals").to.deep.equal(baseline);
      await stillServes(carol);
    });

    it("answers NOT_FOUND for an unknown conversationId", async () => {
      const unknown = uuidv4();
      await expectAll(alice, "message:send", [["an unknown conversation", [{ clientMsgId: uuidv4(), conversationId: unknown, content: "x" }]]], "NOT_FOUND");
      await expectAll(alice, "message:history", [["an unknown conversation", [{ conversationId: unknown }]]], "NOT_FOUND");
      await expectAll(alice, "typing", [["an unknown conversation", [{ conversationId: unknown, typing: true }]]], "NOT_FOUND");
    });

    it("answers FORBIDDEN to a non-member for send, history and typing, and leaks nothing", async () => {
      const aliceMark = alice.events.length;
      const bobMark = bob.events.length;
      for (const conversationId of [direct, group]) {
        await expectAll(carol, "message:send", [[`a foreign conversation`, [{ clientMsgId: uuidv4(), conversationId, content: "let me in" }]]], "FORBIDDEN");
        await expectAll(carol, "message:history", [["a foreign conversation", [{ conversationId }]]], "FORBIDDEN");
        await expectAll(carol, "typing", [["a foreign conversation", [{ conversationId, typing: true }]]], "FORBIDDEN");
      }
      await quiet();
      const leaked = (d: Device, mark: number) =>
        d.events.slice(mark).filter((e) => ["typing", "message:new", "conversation:new"].includes(e.event));
      expect(leaked(alice, aliceMark)).to.deep.equal([]);
      expect(leaked(bob, bobMark)).to.deep.equal([]);
      const { rows } = await suite.pg.query(
        "SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1 AND conversation_id = ANY($2::uuid[])",
        [carolId, [direct, group]],
      );
      expect(rows[0].n).to.equal(0);
      const joined = await suite.pg.query(
        "SELECT count(*)::int AS n FROM conversation_members WHERE user_id = $1 AND conversation_id = ANY($2::uuid[])",
        [carolId, [direct, group]],
      );
      expect(joined.rows[0].n, "carol joined neither conversation").to.equal(0);
    });
  });

  describe("events without a callback, unknown events, oversized packets", () => {
    it("stores nothing for a message:send without a callback", async () => {
      const baseline = await counts();
      const clientMsgId = uuidv4();
      (alice.socket as unknown as { emit(ev: string, p: unknown): void }).emit("message:send", {
        clientMsgId,
        to: uniqueId("nocb"),
        content: "no callback",
      });
      await quiet(500);
      const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1 AND client_msg_id = $2", [
        aliceId,
        clientMsgId,
      ]);
      expect(rows[0].n).to.equal(0);
      expect(await counts()).to.deep.equal(baseline);
      // Every other event without a callback: no crash, nothing breaks.
      const emit = alice.socket as unknown as { emit(ev: string, ...a: unknown[]): void };
      emit.emit("message:read", { messageIds: [toAlice] });
      emit.emit("message:history", { conversationId: direct });
      emit.emit("conversation:list", {});
      emit.emit("typing", { conversationId: direct, typing: false });
      emit.emit("presence:subscribe", { userIds: [bobId] });
      emit.emit("message:send", "garbage");
      emit.emit("group:create");
      await quiet();
      expect(alice.socket.connected).to.equal(true);
      await stillServes(alice);
    });

    it("ignores unknown event names without a callback and answers BAD_REQUEST to those with one", async () => {
      const baseline = await counts();
      const names = ["no:such:event", "message:new", "sync:complete", "message:status", "toString", "hasOwnProperty", "__proto__"];
      const emit = alice.socket as unknown as { emit(ev: string, ...a: unknown[]): void };
      const answered: string[] = [];
      await Promise.all(
        names.map(
          (name) =>
            new Promise<void>((resolve) => {
              emit.emit(name, { clientMsgId: uuidv4(), to: bobId, content: "x" });
              const timed = alice.socket.timeout(2000) as unknown as { emit(ev: string, ...a: unknown[]): void };
              timed.emit(name, { x: 1 }, (err: Error | null, reply: { ok: boolean; error?: { code: string } }) => {
                if (!err && reply.ok === false && reply.error?.code === "BAD_REQUEST") answered.push(name);
                resolve();
              });
            }),
        ),
      );
      expect(answered.sort(), "unknown events answered BAD_REQUEST").to.deep.equal([...names].sort());
      expect(alice.socket.connected).to.equal(true);
      expect(await counts()).to.deep.equal(baseline);
      await stillServes(alice);
    });

    it("disconnects only the socket that sends a packet over maxHttpBufferSize", async () => {
      const bigId = uniqueId("big");
      const big = await device(bigId);
      // Its directory entry is written beside the backlog sync, not before it: wait for it.
      for (let i = 0; i < 500 && (await suite.pg.query("SELECT 1 FROM users WHERE user_id = $1", [bigId])).rowCount === 0; i++) {
        await quiet(10);
      }
      const baseline = await counts();
      const closed = new Promise<string>((resolve) => big.socket.once("disconnect", (reason) => resolve(reason)));
      // Default MAX_CONTENT_LENGTH 4096 → a 64 KiB buffer; this is ~200 KiB.
      big.socket.emit("message:send", { clientMsgId: uuidv4(), to: bobId, content: "x".repeat(200_000) }, () => {});
      const reason = await Promise.race([closed, new Promise<string>((r) => setTimeout(() => r("still connected"), 5000))]);
      expect(reason).to.not.equal("still connected");
      expect(big.socket.connected).to.equal(false);
      // Everyone else is untouched.
      expect([alice, bob, carol].filter((d) => !d.socket.connected).map((d) => d.userId), "devices disconnected").to.deep.equal([]);
      expect(await counts()).to.deep.equal(baseline);
      const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM messages WHERE from_user_id = $1", [bigId]);
      expect(rows[0].n).to.equal(0);
      await stillServes(alice);
      // The same user can come back and send.
      const again = await device(bigId);
      await stillServes(again);
    });
  });

  describe("only the recipient can move a status", () => {
    it("leaves the row sent when the sender or a third user calls message:read", async () => {
      const senderId = uniqueId("sender");
      const recipientId = uniqueId("recipient");
      const sender = await device(senderId);
      const third = carol;
      const sent = await sender.request("message:send", { clientMsgId: uuidv4(), to: recipientId, content: "for your eyes" });
      if (!sent.ok) expect.fail(sent.error.message);
      const id = sent.message.id;
      const status = async () =>
        (await suite.pg.query("SELECT recipient_id, status, delivered_at, read_at FROM message_delivery WHERE message_id = $1", [id]))
          .rows;

      expect(await sender.request("message:read", { messageIds: [id] })).to.deep.equal({ ok: true, updated: 0 });
      expect(await third.request("message:read", { messageIds: [id] })).to.deep.equal({ ok: true, updated: 0 });
      await quiet();
      expect(await status()).to.deep.equal([{ recipient_id: recipientId, status: "sent", delivered_at: null, read_at: null }]);
      expect(sender.statuses, "status updates the sender got").to.deep.equal([]);
      const { rows } = await suite.pg.query("SELECT count(*)::int AS n FROM message_delivery WHERE message_id = $1", [id]);
      expect(rows[0].n, "no delivery row was created for the sender or the third user").to.equal(1);

      // The recipient can (read implies delivered), once.
      const recipient = suite.suiteDevice(recipientId, { autoAck: false });
      await recipient.connect();
      expect(await recipient.request("message:read", { messageIds: [id] })).to.deep.equal({ ok: true, updated: 1 });
      const [row] = await status();
      expect(row.status).to.equal("read");
      expect(row.read_at).to.be.instanceOf(Date);
      expect(row.delivered_at).to.be.instanceOf(Date);
      await waitFor(() => sender.statuses.some((s) => s.status === "read"), "read status to the sender");
      expect(sender.statuses.find((s) => s.status === "read")).to.include({ by: recipientId });
      expect(await recipient.request("message:read", { messageIds: [id] })).to.deep.equal({ ok: true, updated: 0 });
    });
  });
});
