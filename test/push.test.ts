import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Writable } from "node:stream";
import pino from "pino";
import { Client } from "pg";
import { ConfigError, loadConfig } from "../src/config";
import { startTicks, type RunningTicks } from "../src/main";
import type { Message } from "../src/protocol";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device } from "./helpers/device";
import { uniqueId } from "./helpers/ids";
import { quiet, waitFor } from "./helpers/wait";
import { freePort, ROOT, spawnNode } from "./helpers/processes";
import { FakePushGateway } from "./helpers/pushGateway";
import { upload } from "./helpers/media";
import { expectOk } from "./helpers/replies";
import { ManualClock, startServer, testConfig, urlOf } from "./helpers/server";
import { useServerSuite } from "./helpers/serverSuite";

const DAY = 24 * 3600 * 1000;

describe("push notifications", function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let pg: Client;
  let gw: FakePushGateway;
  const servers: RunningTicks[] = [];
  const devices: Device[] = [];

  /** Short settings: due 200 ms after sending, retries from 50 ms. */
  const start = async (env: Record<string, string> = {}, clock?: ManualClock) => {
    const s = await startServer(
      db.url,
      { PUSH_GATEWAY_URL: gw.url, PUSH_DELAY_MS: "200", PUSH_RETRY_MIN_MS: "50", PUSH_TIMEOUT_MS: "1000", ...env },
      clock,
    );
    servers.push(s);
    return s;
  };
  const device = (server: RunningTicks, userId: string, options: { deviceId?: string; autoAck?: boolean } = {}) => {
    const d = new Device(urlOf(server), { userId, ...options });
    devices.push(d);
    return d;
  };
  /** Registers a pushkey from a device that then goes away (an app sent to the background). */
  const register = async (server: RunningTicks, userId: string, pushkey: string, appId = "com.example.ticks", deviceId?: string) => {
    const d = await device(server, userId, deviceId ? { deviceId } : {}).connectSynced();
    const reply = await d.request("push:register", { pushkey, appId });
    expect(reply).to.deep.equal({ ok: true });
    d.close();
  };
  const send = (from: Device, to: string, content = "hello"): Promise<Message> => from.send(to, content);
  const outbox = async (messageId: string) =>
    (await pg.query("SELECT recipient_id, attempts FROM push_outbox WHERE message_id = $1", [messageId])).rows;
  const pushkeysOf = async (userId: string) =>
    (await pg.query("SELECT pushkey FROM pushkeys WHERE user_id = $1 ORDER BY pushkey", [userId])).rows.map((r) => r.pushkey);
  const counter = async (server: RunningTicks, name: string) =>
    (await server.metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;

  before(async () => {
    db = await createTestDatabase();
    pg = new Client({ connectionString: db.url });
    await pg.connect();
  });
  beforeEach(async () => {
    gw = await new FakePushGateway().start();
  });
  afterEach(async () => {
    devices.splice(0).forEach((d) => d.close());
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    await gw.stop();
    // Each case starts with an empty outbox: nothing a case left behind reaches the next one's gateway.
    await pg.query("DELETE FROM push_outbox");
  });
  after(async () => {
    await pg.end();
    await db.drop();
  });

  it("sends an offline user exactly one notify per message, with ids, sender, unread count and every device, no content", async () => {
    const server = await start();
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    await register(server, b, "pushkey-phone-1", "com.example.ticks.ios", "phone");
    await register(server, b, "pushkey-tablet-1", "com.example.ticks.android", "tablet");
    const alice = await device(server, a).connectSynced();

    const first = await send(alice, b, "secret text");
    await waitFor(() => gw.for(first.id).length === 1, "the first notify");
    const second = await send(alice, b, "more secret text");
    await waitFor(() => gw.for(second.id).length === 1, "the second notify");
    await quiet(600); // several worker rounds: nothing is sent twice
    expect(gw.for(first.id)).to.have.length(1);
    expect(gw.for(second.id)).to.have.length(1);
    expect(gw.requests).to.have.length(2);

    const keys = await pg.query("SELECT pushkey, registered_at, device_id, app_id FROM pushkeys WHERE user_id = $1 ORDER BY registered_at", [b]);
    const expectedDevices = keys.rows.map((r) => ({
      app_id: r.app_id,
      pushkey: r.pushkey,
      pushkey_ts: Math.floor(new Date(r.registered_at).getTime() / 1000),
    }));
    expect(keys.rows.map((r) => r.device_id)).to.deep.equal(["phone", "tablet"]);
    const [one] = gw.for(first.id);
    expect(one!.path).to.equal("/_matrix/push/v1/notify");
    expect(one!.contentType).to.equal("application/json");
    expect(one!.body).to.deep.equal({
      notification: {
        event_id: first.id,
        room_id: first.conversationId,
        type: "m.room.message",
        sender: a,
        prio: "high",
        counts: { unread: 1 },
        devices: expectedDevices,
      },
    });
    expect(JSON.stringify(gw.requests)).not.to.include("secret");
    expect(gw.for(second.id)[0]!.body.notification.counts).to.deep.equal({ unread: 2 });
    expect(await outbox(first.id)).to.deep.equal([]);
    expect(await counter(server, "ticks_push_sent_total")).to.equal(2);
  });

  it("pushes each offline member of a group that has pushkeys, once, with the group as room_id", async () => {
    const server = await start();
    const [a, b, c, d] = ["alice", "bob", "carol", "dave"].map((p) => uniqueId(p)) as [string, string, string, string];
    await register(server, b, uniqueId("key-b"));
    await register(server, c, uniqueId("key-c"));
    const alice = await device(server, a).connectSynced();
    const group = await alice.request("group:create", { title: "g", members: [b, c, d] });
    if (!group.ok) throw new Error(group.error.message);
    await device(server, c).connectSynced(); // carol is online and confirms; dave has no pushkey
    const reply = await alice.request("message:send", { clientMsgId: uniqueId("c"), conversationId: group.conversationId, content: "hi all" });
    if (!reply.ok) throw new Error(reply.error.message);
    await waitFor(() => gw.for(reply.message.id).length === 1, "bob's notify");
    await quiet(500);
    const [only] = gw.for(reply.message.id);
    expect(gw.for(reply.message.id)).to.have.length(1);
    expect(only!.body.notification.room_id).to.equal(group.conversationId);
    expect(only!.body.notification.devices.map((x) => x.pushkey)).to.have.length(1).and.satisfy((k: string[]) => k[0]!.startsWith("key-b"));
  });

  it("puts the text in only with PUSH_INCLUDE_CONTENT=true", async () => {
    const server = await start({ PUSH_INCLUDE_CONTENT: "true" });
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const m = await send(alice, b, "see you at 8");
    await waitFor(() => gw.for(m.id).length === 1, "the notify");
    expect(gw.for(m.id)[0]!.body.notification.content).to.deep.equal({ body: "see you at 8" });
  });

  it("names a media message's type in the body with PUSH_INCLUDE_CONTENT=true: Photo, Voice message, Document", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "ticks-push-media-"));
    try {
      const server = await start({ PUSH_INCLUDE_CONTENT: "true", DATA_DIR: dataDir });
      const b = uniqueId("bob");
      await register(server, b, uniqueId("key"));
      const alice = await device(server, uniqueId("alice")).connectSynced();
      const cases: [string, string, string][] = [
        ["image/jpeg", "", "Photo"],
        ["audio/ogg", "", "Voice message"],
        ["application/pdf", "the contract", "Document: the contract"],
      ];
      for (const [mime, caption, body] of cases) {
        const mediaId = await upload(alice, urlOf(server), Buffer.from("bytes"), mime);
        const reply = await alice.request("message:send", { clientMsgId: uniqueId("c"), to: b, content: caption, media: { mediaId } });
        expectOk(reply);
        await waitFor(() => gw.for(reply.message.id).length === 1, `the notify for ${mime}`);
        expect(gw.for(reply.message.id)[0]!.body.notification.content).to.deep.equal({ body });
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it("sends nothing when a device confirms within PUSH_DELAY_MS: live receipt, backlog ack or read", async () => {
    const server = await start({ PUSH_DELAY_MS: "1500" });
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const [live, backlog, reader, offline] = ["live", "backlog", "reader", "offline"].map((p) => uniqueId(p));
    for (const u of [live, backlog, reader, offline]) await register(server, u!, uniqueId("key"));

    await device(server, live!).connectSynced(); // confirms live messages (autoAck)
    const readerDevice = await device(server, reader!, { autoAck: false }).connectSynced();
    const toLive = await send(alice, live!);
    const toBacklog = await send(alice, backlog!);
    const toReader = await send(alice, reader!);
    const toOffline = await send(alice, offline!);
    await device(server, backlog!).connectSynced(); // acknowledges the backlog page
    await waitFor(() => readerDevice.live.length === 1, "the reader's live message");
    expect(await readerDevice.request("message:read", { messageIds: [toReader.id] })).to.deep.equal({ ok: true, updated: 1 });
    // The confirmations removed their outbox rows at once.
    for (const m of [toLive, toBacklog, toReader]) expect(await outbox(m.id)).to.deep.equal([]);

    await waitFor(() => gw.for(toOffline.id).length === 1, "the offline user's notify", 10_000);
    await quiet(300);
    expect(gw.requests.map((r) => r.body.notification.event_id)).to.deep.equal([toOffline.id]);
  });

  it("retries a gateway answering 500, 500, then 200: three POSTs with the same event_id", async () => {
    const server = await start();
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    gw.script.push({ status: 500, body: { error: "upstream" } }, { status: 500 });
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const m = await send(alice, b);
    await waitFor(() => gw.for(m.id).length === 3, "three POSTs");
    await quiet(400);
    expect(gw.requests.map((r) => r.body.notification.event_id)).to.deep.equal([m.id, m.id, m.id]);
    expect(await outbox(m.id)).to.deep.equal([]);
    expect(await counter(server, "ticks_push_retried_total")).to.equal(2);
    expect(await counter(server, "ticks_push_sent_total")).to.equal(1);
  });

  it("retries a dropped connection, garbage and a hanging gateway (PUSH_TIMEOUT_MS) while messages keep flowing", async () => {
    const server = await start({ PUSH_TIMEOUT_MS: "2000" });
    const b = uniqueId("bob");
    const c = uniqueId("carol");
    await register(server, b, uniqueId("key"));
    gw.script.push("close", "garbage", "hang", { status: 200, body: "not json" });
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const carol = await device(server, c).connectSynced();
    const m = await send(alice, b);
    await waitFor(() => gw.for(m.id).length === 3, "the hanging POST");
    // While the gateway holds that POST open, a send is acknowledged and delivered live.
    const live = await send(alice, c, "still flowing");
    await waitFor(() => carol.live.some((x) => x.id === live.id), "live delivery during the hang");
    expect(gw.for(m.id)).to.have.length(3); // the POST is still hanging
    // Then it times out and is retried; a 2xx that is not JSON counts as failed too.
    await waitFor(() => gw.for(m.id).length === 5, "the fifth POST, which the gateway takes");
    await waitFor(async () => (await outbox(m.id)).length === 0, "the outbox row gone");
    expect(await counter(server, "ticks_push_retried_total")).to.equal(4);
    expect(await counter(server, "ticks_push_sent_total")).to.equal(1);
  });

  it("gives up after PUSH_RETRY_FOR_MS and logs it", async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const config = testConfig({
      DATABASE_URL: db.url,
      AUTH_MODE: "dev",
      PUSH_GATEWAY_URL: gw.url,
      PUSH_DELAY_MS: "100",
      PUSH_RETRY_MIN_MS: "50",
      PUSH_RETRY_FOR_MS: "400",
    });
    const server = await startTicks(config, { log: pino({ level: "info" }, sink) });
    servers.push(server);
    gw.fallback = { status: 503 };
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const m = await send(alice, b);
    await waitFor(() => lines.some((l) => l.includes("push given up")), "the give-up log line");
    const line = JSON.parse(lines.find((l) => l.includes("push given up"))!);
    expect(line.pushes).to.deep.include({ messageId: m.id, recipient: b, attempts: gw.for(m.id).length });
    expect(gw.for(m.id).length).to.be.at.least(2);
    expect(await outbox(m.id)).to.deep.equal([]);
    expect(await counter(server, "ticks_push_failed_total")).to.equal(1);
    const count = gw.requests.length;
    await quiet(300);
    expect(gw.requests.length).to.equal(count);
  });

  it("removes pushkeys the gateway rejects: they get no further pushes", async () => {
    const server = await start();
    const b = uniqueId("bob");
    await register(server, b, "dead-key");
    await register(server, b, "good-key");
    const alice = await device(server, uniqueId("alice")).connectSynced();
    gw.script.push({ status: 200, body: { rejected: ["dead-key", "someone-elses-key"] } });
    const first = await send(alice, b);
    await waitFor(() => gw.for(first.id).length === 1, "the first notify");
    await waitFor(async () => (await pushkeysOf(b)).length === 1, "the rejected pushkey removed");
    expect(await pushkeysOf(b)).to.deep.equal(["good-key"]);
    expect(await counter(server, "ticks_pushkeys_rejected_total")).to.equal(1);

    const second = await send(alice, b);
    await waitFor(() => gw.for(second.id).length === 1, "the second notify");
    expect(gw.for(second.id)[0]!.body.notification.devices.map((d) => d.pushkey)).to.deep.equal(["good-key"]);

    // With its last pushkey rejected, the user gets no outbox rows and no pushes at all.
    gw.script.push({ status: 200, body: { rejected: ["good-key"] } });
    const third = await send(alice, b);
    await waitFor(() => gw.for(third.id).length === 1, "the third notify");
    await waitFor(async () => (await pushkeysOf(b)).length === 0, "the last pushkey removed");
    expect(await pushkeysOf(b)).to.deep.equal([]);
    const fourth = await send(alice, b);
    expect(await outbox(fourth.id)).to.deep.equal([]);
    await quiet(500);
    expect(gw.for(fourth.id)).to.deep.equal([]);
  });

  it("keeps a push through a gateway outage and a server restart: it arrives once the gateway is up", async () => {
    await gw.stop(); // down: connections to its port are refused
    gw = new FakePushGateway(await freePort());
    const env = { PUSH_GATEWAY_URL: gw.url, PUSH_DELAY_MS: "100", PUSH_RETRY_MIN_MS: "100" };
    const first = await start(env);
    const b = uniqueId("bob");
    await register(first, b, uniqueId("key"));
    const alice = await device(first, uniqueId("alice")).connectSynced();
    const m = await send(alice, b);
    await waitFor(async () => (await counter(first, "ticks_push_retried_total")) >= 2, "two refused attempts");
    alice.close();
    await first.stop();
    servers.splice(servers.indexOf(first), 1);
    expect(await outbox(m.id)).to.have.length(1); // pending, in PostgreSQL

    // An unreachable gateway does not stop a server from starting.
    const second = await start(env);
    await waitFor(async () => (await counter(second, "ticks_push_retried_total")) >= 1, "the new node meeting the gateway down");
    await gw.start();
    await waitFor(() => gw.for(m.id).length === 1, "the push after the restart", 15_000);
    expect(gw.for(m.id)[0]!.body.notification.sender).to.equal(m.from);
    await waitFor(async () => (await outbox(m.id)).length === 0, "the outbox row gone");
    expect(second.pushWorker).not.to.equal(null);
  });

  it("lets another node send a push whose node died mid-POST, once the claim's lease runs out", async () => {
    gw.script.push("hang");
    const env = { DATABASE_URL: db.url, AUTH_MODE: "dev", PUSH_GATEWAY_URL: gw.url, PUSH_DELAY_MS: "100", PUSH_TIMEOUT_MS: "1000" };
    const doomed = await spawnNode(env);
    try {
      const b = uniqueId("bob");
      const bobDevice = new Device(doomed.url, { userId: b });
      devices.push(bobDevice);
      await bobDevice.connectSynced();
      expect(await bobDevice.request("push:register", { pushkey: uniqueId("key"), appId: "app" })).to.deep.equal({ ok: true });
      bobDevice.close();
      const alice = new Device(doomed.url, { userId: uniqueId("alice") });
      devices.push(alice);
      await alice.connectSynced();
      const m = await send(alice, b);
      await waitFor(() => gw.for(m.id).length === 1, "the POST the gateway holds open");
      await doomed.kill("SIGKILL");
      expect(await outbox(m.id)).to.deep.equal([{ recipient_id: b, attempts: 1 }]); // claimed, leased, not lost

      await start({ PUSH_TIMEOUT_MS: "1000" }); // lease: 2 × 1 s + 5 s after the claim
      await waitFor(() => gw.for(m.id).length === 2, "the push sent again by the other node", 20_000);
      await waitFor(async () => (await outbox(m.id)).length === 0, "the outbox row gone");
    } finally {
      await doomed.kill("SIGKILL");
    }
  });

  it("sends each notification once with two nodes on one database", async () => {
    const env = { PUSH_DELAY_MS: "50" };
    const nodes = [await start(env), await start(env)];
    const users = [uniqueId("bob"), uniqueId("carol"), uniqueId("dave")];
    for (const u of users) await register(nodes[0]!, u, uniqueId("key"));
    const senders = await Promise.all(nodes.map((n) => device(n, uniqueId("alice")).connectSynced()));
    const sent: Message[] = [];
    for (let i = 0; i < 60; i++) sent.push(await send(senders[i % 2]!, users[i % 3]!, `m${i}`));
    await waitFor(() => new Set(gw.requests.map((r) => r.body.notification.event_id)).size === sent.length, "every notify", 20_000);
    await quiet(500);
    const ids = gw.requests.map((r) => r.body.notification.event_id);
    expect(ids).to.have.length(sent.length);
    expect(new Set(ids)).to.deep.equal(new Set(sent.map((m) => m.id)));
    const perNode = await Promise.all(nodes.map((n) => counter(n, "ticks_push_sent_total")));
    expect(perNode[0]! + perNode[1]!).to.equal(sent.length);
    console.log(`      pushes sent per node: ${perNode.join(" + ")}`);
  });

  it("does not push a deleted message, nor edits, deletes or reactions themselves", async () => {
    const server = await start({ PUSH_DELAY_MS: "1000" });
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const deleted = await send(alice, b, "oops");
    const kept = await send(alice, b, "hello");
    const entries = [
      await alice.request("message:edit", { clientMsgId: uniqueId("c"), messageId: kept.id, content: "hello!" }),
      await alice.request("message:react", { clientMsgId: uniqueId("c"), messageId: kept.id, emoji: "👍" }),
      await alice.request("message:delete", { clientMsgId: uniqueId("c"), messageId: deleted.id }),
    ];
    const entryIds = entries.map((r) => {
      if (!r.ok) throw new Error(r.error.message);
      return r.message.id;
    });
    for (const id of entryIds) expect(await outbox(id)).to.deep.equal([]); // entries get no outbox row
    await waitFor(() => gw.for(kept.id).length === 1, "the kept message's notify");
    await waitFor(async () => (await outbox(deleted.id)).length === 0, "the deleted message's row dropped");
    await quiet(300);
    expect(gw.requests.map((r) => r.body.notification.event_id)).to.deep.equal([kept.id]);
    // Unread counts text messages not deleted for everyone (v3), as conversation:list does: the kept one.
    expect(gw.for(kept.id)[0]!.body.notification.counts.unread).to.equal(1);
    expect(await counter(server, "ticks_push_cancelled_total")).to.equal(1);
  });

  it("does not push expired messages, and the expiry sweep takes pending pushes with them", async () => {
    const clock = new ManualClock();
    const server = await start({ MESSAGE_TTL_DAYS: "1", PUSH_DELAY_MS: "60000" }, clock);
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const expiring = await send(alice, b);
    const swept = await send(alice, b);
    expect(await outbox(expiring.id)).to.have.length(1);
    clock.advance(2 * DAY); // both due and both expired
    // The sweep and the worker race: either way no push, and no row left.
    await server.sweeper.sweepNow();
    await server.pushWorker!.pushNow();
    expect(await outbox(expiring.id)).to.deep.equal([]);
    expect(await outbox(swept.id)).to.deep.equal([]);
    await quiet(300);
    expect(gw.requests).to.deep.equal([]);

    // Expired but not yet swept: the worker drops it unsent.
    const late = await send(alice, b);
    clock.advance(2 * DAY);
    await server.pushWorker!.pushNow();
    expect(await outbox(late.id)).to.deep.equal([]);
    expect((await pg.query("SELECT 1 FROM messages WHERE message_id = $1", [late.id])).rows).to.have.length(1);
    expect(gw.requests).to.deep.equal([]);
    expect(await counter(server, "ticks_push_cancelled_total")).to.be.at.least(1);
  });

  it("exposes the outbox depth and the oldest due age on /metrics", async () => {
    await gw.stop();
    const server = await start({ PUSH_DELAY_MS: "0", PUSH_RETRY_MIN_MS: "60000" });
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    const alice = await device(server, uniqueId("alice")).connectSynced();
    await send(alice, b);
    await send(alice, b);
    let text = "";
    const scrape = async () => (text = await (await fetch(`${urlOf(server)}/metrics`)).text());
    await waitFor(async () => /^ticks_push_retried_total 2$/m.test(await scrape()), () => `two failed attempts in:\n${text}`);
    expect(text).to.match(/^ticks_push_outbox_depth 2$/m);
    const age = Number(/^ticks_push_outbox_oldest_due_seconds (\S+)$/m.exec(text)![1]);
    expect(age).to.be.greaterThan(0);
  });

  it("CLI: `push register <pushkey>` registers the device, and pushes for it reach the gateway", async () => {
    const server = await start();
    const b = uniqueId("bob");
    const cli = spawn(process.execPath, ["--import", "tsx", path.join(ROOT, "src/client/cli.ts"), "--user", b, "--url", urlOf(server)], {
      cwd: ROOT,
      stdio: "pipe",
    });
    const out: string[] = [];
    cli.stdout.on("data", (c: Buffer) => out.push(...c.toString().split("\n").filter(Boolean)));
    try {
      await waitFor(() => out.some((l) => l.startsWith("synced")), "the CLI synced", 15_000);
      cli.stdin.write("push register cli-key-1\n");
      await waitFor(() => out.includes("push registered cli-key-1 (ticks.cli)"), "the registration line");
      cli.stdin.end();
      await new Promise((resolve) => cli.once("close", resolve));
      const alice = await device(server, uniqueId("alice")).connectSynced();
      const m = await send(alice, b);
      await waitFor(() => gw.for(m.id).length === 1, "the notify");
      expect(gw.for(m.id)[0]!.body.notification.devices.map((d) => [d.app_id, d.pushkey])).to.deep.equal([["ticks.cli", "cli-key-1"]]);
    } finally {
      if (cli.exitCode === null) cli.kill("SIGKILL");
    }
  });

  it("keeps the outbox empty with PUSH_GATEWAY_URL unset, while registrations still work", async () => {
    const server = await startServer(db.url, {});
    servers.push(server);
    const b = uniqueId("bob");
    await register(server, b, uniqueId("key"));
    expect(await pushkeysOf(b)).to.have.length(1);
    const alice = await device(server, uniqueId("alice")).connectSynced();
    const m = await send(alice, b);
    expect(await outbox(m.id)).to.deep.equal([]);
    expect(server.pushWorker).to.equal(null);
  });
});

describe("push:register and push:unregister", () => {
  const suite = useServerSuite();
  const pushkeys = async () =>
    (await suite.pg.query("SELECT pushkey, user_id, app_id, device_id FROM pushkeys ORDER BY pushkey")).rows;

  it("moves a pushkey registered again, even by another user; unregisters only one's own", async () => {
    const a = uniqueId("alice");
    const b = uniqueId("bob");
    const alice = await suite.device(a, { deviceId: "alice-phone" }).connectSynced();
    const bob = await suite.device(b, { deviceId: "bob-phone" }).connectSynced();
    expect(await alice.request("push:register", { pushkey: "shared-key", appId: "com.example.a", kind: "http" })).to.deep.equal({ ok: true });
    expect(await pushkeys()).to.deep.equal([{ pushkey: "shared-key", user_id: a, app_id: "com.example.a", device_id: "alice-phone" }]);
    // The phone changed hands (or accounts): the key follows the last registration.
    expect(await bob.request("push:register", { pushkey: "shared-key", appId: "com.example.b" })).to.deep.equal({ ok: true });
    expect(await pushkeys()).to.deep.equal([{ pushkey: "shared-key", user_id: b, app_id: "com.example.b", device_id: "bob-phone" }]);

    const foreign = await alice.request("push:unregister", { pushkey: "shared-key" });
    expect(foreign.ok === false && foreign.error.code).to.equal("BAD_REQUEST");
    expect(await pushkeys()).to.have.length(1);
    expect(await alice.request("push:unregister", { pushkey: "nobody-has-this" })).to.deep.equal({ ok: true, removed: 0 });
    expect(await bob.request("push:unregister", { pushkey: "shared-key" })).to.deep.equal({ ok: true, removed: 1 });
    expect(await bob.request("push:unregister", { pushkey: "shared-key" })).to.deep.equal({ ok: true, removed: 0 });
    expect(await pushkeys()).to.deep.equal([]);
  });

  it("keeps at most 32 pushkeys a user, dropping the oldest", async () => {
    const u = uniqueId("many");
    const d = await suite.device(u).connectSynced();
    for (let i = 0; i < 34; i++) {
      expect(await d.request("push:register", { pushkey: `k${String(i).padStart(2, "0")}-${u}`, appId: "app" })).to.deep.equal({ ok: true });
    }
    const { rows } = await suite.pg.query("SELECT pushkey FROM pushkeys WHERE user_id = $1 ORDER BY pushkey", [u]);
    expect(rows.map((r) => r.pushkey.slice(0, 3))).to.deep.equal(Array.from({ length: 32 }, (_, i) => `k${String(i + 2).padStart(2, "0")}`));
    await suite.pg.query("DELETE FROM pushkeys WHERE user_id = $1", [u]);
  });

  it("answers BAD_REQUEST to a missing, empty, too long or malformed pushkey or appId, and stores nothing", async () => {
    const d = await suite.device(uniqueId("hostile")).connectSynced();
    const bad: [string, unknown][] = [
      ["push:register", { appId: "app" }],
      ["push:register", { pushkey: "", appId: "app" }],
      ["push:register", { pushkey: "k".repeat(513), appId: "app" }],
      ["push:register", { pushkey: "has space", appId: "app" }],
      ["push:register", { pushkey: "nul\u0000", appId: "app" }],
      ["push:register", { pushkey: 42, appId: "app" }],
      ["push:register", { pushkey: "k" }],
      ["push:register", { pushkey: "k", appId: "" }],
      ["push:register", { pushkey: "k", appId: "a".repeat(65) }],
      ["push:register", { pushkey: "k", appId: "com.example/evil" }],
      ["push:register", { pushkey: "k", appId: "app", kind: "email" }],
      ["push:register", null],
      ["push:register", "k"],
      ["push:unregister", {}],
      ["push:unregister", { pushkey: "" }],
      ["push:unregister", { pushkey: "k".repeat(513) }],
      ["push:unregister", { pushkey: ["k"] }],
    ];
    for (const [event, payload] of bad) {
      const reply = (await d.raw(event, payload)) as { ok: boolean; error?: { code: string } };
      expect(reply.ok, `${event} ${JSON.stringify(payload)}`).to.equal(false);
      expect(reply.error!.code, `${event} ${JSON.stringify(payload)}`).to.equal("BAD_REQUEST");
    }
    expect(await pushkeys()).to.deep.equal([]);
    // The longest allowed ones are fine.
    const pushkey = "k".repeat(512);
    expect(await d.request("push:register", { pushkey, appId: "a".repeat(64) })).to.deep.equal({ ok: true });
    expect(await d.request("push:unregister", { pushkey })).to.deep.equal({ ok: true, removed: 1 });
  });
});

describe("push configuration", () => {
  const base = { DATABASE_URL: "postgres://x@127.0.0.1/db", AUTH_MODE: "dev" };
  const refused = (env: Record<string, string>, what: RegExp) => {
    expect(() => loadConfig({ ...base, ...env })).to.throw(ConfigError, what);
  };

  it("validates every PUSH_ setting at start", () => {
    refused({ PUSH_GATEWAY_URL: "not a url" }, /PUSH_GATEWAY_URL/);
    refused({ PUSH_GATEWAY_URL: "ftp://gateway/_matrix/push/v1/notify" }, /PUSH_GATEWAY_URL: must be an http/);
    refused({ PUSH_DELAY_MS: "-1" }, /PUSH_DELAY_MS/);
    refused({ PUSH_DELAY_MS: "soon" }, /PUSH_DELAY_MS/);
    refused({ PUSH_TIMEOUT_MS: "0" }, /PUSH_TIMEOUT_MS/);
    refused({ PUSH_RETRY_FOR_MS: "1.5" }, /PUSH_RETRY_FOR_MS/);
    refused({ PUSH_RETRY_MIN_MS: "1" }, /PUSH_RETRY_MIN_MS/);
    refused({ PUSH_INCLUDE_CONTENT: "yes" }, /PUSH_INCLUDE_CONTENT/);
  });

  it("is off without PUSH_GATEWAY_URL (empty counts as unset), with the documented defaults when set", () => {
    expect(loadConfig(base).push).to.equal(null);
    expect(loadConfig({ ...base, PUSH_GATEWAY_URL: "", PUSH_DELAY_MS: "5" }).push).to.equal(null);
    expect(loadConfig({ ...base, PUSH_GATEWAY_URL: "https://push.example.com/_matrix/push/v1/notify" }).push).to.deep.equal({
      gatewayUrl: "https://push.example.com/_matrix/push/v1/notify",
      delayMs: 2000,
      timeoutMs: 5000,
      retryForMs: 3_600_000,
      retryMinMs: 1000,
      includeContent: false,
    });
  });
});
