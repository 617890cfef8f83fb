import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { expect } from "chai";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { Device, uniqueId, waitFor } from "./helpers/device";
import { ROOT } from "./helpers/processes";
import { mintToken, startServer, TEST_SECRET, urlOf } from "./helpers/server";

const CLI = path.join(ROOT, "src/client/cli.ts");

/** One CLI child process with piped stdio, as a script would run it; tests wait on its lines. */
class Cli {
  readonly child: ChildProcess;
  readonly stdout: string[] = [];
  readonly stderr: string[] = [];
  /** Resolves after the process exited and its output was read to the end. */
  readonly closed: Promise<number | null>;

  constructor(readonly args: string[]) {
    this.child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { cwd: ROOT, stdio: "pipe" });
    collectLines(this.child.stdout!, this.stdout);
    collectLines(this.child.stderr!, this.stderr);
    this.closed = new Promise((resolve) => this.child.once("close", (code) => resolve(code)));
  }

  write(line: string): void {
    this.child.stdin!.write(`${line}\n`);
  }

  /** Closes stdin: EOF for the CLI. */
  end(): void {
    this.child.stdin!.end();
  }

  /**
   * Waits for an output line matching `pattern` (a string is matched as the whole line),
   * at index `since` or later, so a repeated line can be told from an earlier one.
   */
  async line(pattern: RegExp | string, since = 0): Promise<RegExpExecArray> {
    const re = typeof pattern === "string" ? new RegExp(`^${escape(pattern)}$`) : pattern;
    const find = () => this.stdout.slice(since).map((l) => re.exec(l)).find((m) => m !== null);
    await waitFor(() => find() !== undefined, `${re} from cli ${this.args.join(" ")}`, 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\nstdout:\n${this.stdout.join("\n")}\nstderr:\n${this.stderr.join("\n")}`);
    });
    return find()!;
  }

  /** Index of the first line equal to `text`, for checking order. */
  indexOf(text: string): number {
    return this.stdout.indexOf(text);
  }

  async exitCode(timeoutMs = 15_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`cli ${this.args.join(" ")} did not exit:\n${this.stdout.join("\n")}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills this child only (by its pid), if it still runs. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    await this.closed;
  }
}

function collectLines(stream: Readable, into: string[]): void {
  let buffer = "";
  stream.setEncoding("utf8");
  stream.on("data", (chunk: string) => {
    buffer += chunk;
    const lines = buffer.split("\n");
    buffer = lines.pop()!;
    into.push(...lines);
  });
  stream.on("end", () => buffer && into.push(buffer));
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

describe("CLI client", function () {
  // Each CLI is a fresh node process with tsx: about a second to start.
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  const clis: Cli[] = [];
  const devices: Device[] = [];
  const cli = (...args: string[]) => {
    const c = new Cli(args);
    clis.push(c);
    return c;
  };

  // Files sent with send-file land here (the disk store), removed at the end.
  const dataDir = mkdtempSync(path.join(tmpdir(), "ticks-cli-"));

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url, { DATA_DIR: dataDir });
  });
  afterEach(async () => {
    await Promise.all(clis.splice(0).map((c) => c.kill()));
    devices.splice(0).forEach((d) => d.close());
  });
  after(async () => {
    await server.stop();
    await db.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("delivers to an offline user on reconnect, then shows delivered and read ticks to the sender", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const url = urlOf(server);

    const bobFirst = cli("--user", bob, "--url", url);
    await bobFirst.line(`connected as ${bob}`);
    await bobFirst.line("synced (0 delivered)");
    bobFirst.write("quit");
    expect(await bobFirst.exitCode()).to.equal(0);

    const a = cli("--user", alice, "--url", url, "--device", "laptop");
    await a.line("synced (0 delivered)");
    a.write(`send ${bob} Hello offline Bob!`);
    const [, id] = await a.line(new RegExp(`^✓ sent (\\S+) to ${bob} \\(#1\\)$`));

    const b = cli("--user", bob, "--url", url);
    await b.line(`#1 [${alice}] Hello offline Bob!`);
    await b.line("synced (1 delivered)");
    // The backlog is printed before sync completes.
    expect(b.indexOf(`#1 [${alice}] Hello offline Bob!`)).to.be.below(b.indexOf("synced (1 delivered)"));
    await a.line(`✓✓ delivered ${id} by ${bob}`);

    b.write("read");
    await b.line("read 1");
    await a.line(`✓✓ read ${id} by ${bob}`);

    // Now bob is online: the next message comes live.
    const aliceSince = a.stdout.length;
    a.write(`send ${bob} Still there?`);
    const [, id2] = await a.line(new RegExp(`^✓ sent (\\S+) to ${bob} \\(#2\\)$`), aliceSince);
    await b.line(`#2 [${alice}] Still there?`);
    await a.line(`✓✓ delivered ${id2} by ${bob}`);

    // History on both sides; the sender's shows the state its ticks reached.
    a.write(`history ${bob}`);
    await a.line(`history ${bob}: 2 messages`);
    await a.line(`#1 [${alice}] Hello offline Bob!  ✓✓ read`);
    await a.line(`#2 [${alice}] Still there?  ✓✓ delivered`);
    b.write(`history ${alice}`);
    await b.line(`#1 [${alice}] Hello offline Bob!`);
    await b.line(`#2 [${alice}] Still there?`);
    // Only what was not marked yet is marked again.
    const since = b.stdout.length;
    b.write("read");
    await b.line("read 1", since);
    await a.line(`✓✓ read ${id2} by ${bob}`);

    a.write("quit");
    b.write("quit");
    expect(await a.exitCode()).to.equal(0);
    expect(await b.exitCode()).to.equal(0);
    for (const sent of [id, id2]) expect(a.stdout.filter((l) => l.includes(sent!))).to.have.length(3); // sent, delivered, read
    expect(a.stderr.concat(b.stderr)).to.deep.equal([]);
  });

  it("on EOF runs every command already read, in order, waits for the acks and exits 0", async () => {
    const carol = uniqueId("carol");
    // Everything arrives before the CLI has even connected, as with `echo ... | cli`.
    const c = cli("--user", uniqueId("dave"), "--url", urlOf(server));
    c.write("bogus");
    c.write(`send ${carol} hi`);
    c.write(`send ${carol} second`);
    c.end();
    expect(await c.exitCode()).to.equal(0);

    const synced = c.indexOf("synced (0 delivered)");
    const sent = c.stdout.filter((l) => l.startsWith(`✓ sent `) && l.includes(` to ${carol} (#`));
    expect(synced).to.be.at.least(0);
    expect(sent).to.have.length(2);
    const usage = c.stdout.findIndex((l) => l.startsWith("usage: send <user> <text...> | send-file <user> <path> [caption...] | save <n> <path> | edit <n> <text...> |"));
    expect(usage).to.be.within(synced, c.indexOf(sent[0]!));
    // Acknowledged means stored: carol gets both, in the order they were sent.
    const device = await new Device(urlOf(server), { userId: carol }).connectSynced();
    devices.push(device);
    expect(device.received.map((m) => m.content)).to.deep.equal(["hi", "second"]);
    expect(sent.map((l) => l.split(" ")[2])).to.deep.equal(device.received.map((m) => m.id));
  });

  it("edits, deletes and reacts to messages by the number it shows beside them", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const url = urlOf(server);
    const a = cli("--user", alice, "--url", url);
    const b = cli("--user", bob, "--url", url);
    await a.line("synced (0 delivered)");
    await b.line("synced (0 delivered)");
    a.write(`send ${bob} helo`);
    await a.line(new RegExp(`^✓ sent \\S+ to ${bob} \\(#1\\)$`));
    a.write(`send ${bob} second`);
    await b.line(`#1 [${alice}] helo`);
    await b.line(`#2 [${alice}] second`);

    a.write("edit 1 hello");
    await a.line(`#1 [${alice}] hello (edited)`);
    await b.line(`#1 [${alice}] hello (edited)`);
    b.write("react 1 👍");
    await b.line(`#1 [${alice}] hello (edited)  👍 ${bob}`);
    await a.line(`#1 [${alice}] hello (edited)  👍 ${bob}`);
    a.write("react 1 🎉");
    await b.line(`#1 [${alice}] hello (edited)  🎉 ${alice} · 👍 ${bob}`);
    b.write("react 1"); // no emoji: takes bob's back
    await a.line(`#1 [${alice}] hello (edited)  🎉 ${alice}`);
    a.write("delete 2");
    await a.line(`#2 [${alice}] message deleted`);
    await b.line(`#2 [${alice}] message deleted`);
    b.write("delete 1");
    await b.line("error FORBIDDEN: only the sender can delete a message");
    b.write("edit 9 nothing there");
    await b.line("error: no message #9 shown yet");

    // A fresh CLI numbers what history shows, in its current state.
    const b2 = cli("--user", bob, "--url", url);
    await b2.line("synced (0 delivered)");
    b2.write(`history ${alice}`);
    await b2.line(`history ${alice}: 2 messages`);
    await b2.line(`#1 [${alice}] hello (edited)  🎉 ${alice}`);
    await b2.line(`#2 [${alice}] message deleted`);
    b2.write("react 1 👀");
    await a.line(`#1 [${alice}] hello (edited)  🎉 ${alice} · 👀 ${bob}`);
    for (const c of [a, b, b2]) c.end();
    for (const c of [a, b, b2]) expect(await c.exitCode()).to.equal(0);
    expect([...a.stderr, ...b.stderr, ...b2.stderr]).to.deep.equal([]);
  });

  it("sends a file with send-file, shows it, and saves it with save <n> <path>", async () => {
    const alice = uniqueId("alice");
    const bob = uniqueId("bob");
    const url = urlOf(server);
    const photo = path.join(dataDir, "beach.png");
    const bytes = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256));
    writeFileSync(photo, bytes);
    const a = cli("--user", alice, "--url", url);
    const b = cli("--user", bob, "--url", url);
    await a.line("synced (0 delivered)");
    await b.line("synced (0 delivered)");
    a.write(`send-file ${bob} ${photo} at the beach`);
    await a.line(new RegExp(`^✓ sent \\S+ to ${bob} \\(#1\\)$`));
    await b.line(`#1 [${alice}] at the beach [photo beach.png, 5 KB]`);
    const saved = path.join(dataDir, "saved.png");
    b.write(`save 1 ${saved}`);
    await b.line(`✓ saved #1 to ${saved} (5000 bytes)`);
    expect(readFileSync(saved).equals(bytes)).to.equal(true);
    a.write(`send-file ${bob} ${path.join(dataDir, "missing.pdf")}`);
    await a.line(/^error FILE: ENOENT/);
    b.write("save 7 /tmp/x");
    await b.line("error: message #7 carries no file");
    for (const c of [a, b]) c.end();
    for (const c of [a, b]) expect(await c.exitCode()).to.equal(0);
  });

  it("prints server errors as error lines and carries on", async () => {
    const erin = uniqueId("erin");
    const c = cli("--user", erin, "--url", urlOf(server));
    c.write(`send ${erin} talking to myself`);
    c.write(`history ${uniqueId("nobody")}`);
    c.end();
    expect(await c.exitCode()).to.equal(0);
    expect(c.stdout).to.include("error BAD_REQUEST: cannot send a direct message to yourself");
    expect(c.stdout.join("\n"), "the cli's output").to.match(/^history \S+: no conversation$/m);
  });

  describe("against a server in JWT mode", () => {
    let jwtServer: RunningTicks;
    before(async () => {
      jwtServer = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET });
    });
    after(() => jwtServer.stop());

    it("exits 1 with `connect failed: unauthorized` when the handshake is refused", async () => {
      const bad = cli("--token", "not-a-jwt", "--url", urlOf(jwtServer));
      const devOnly = cli("--user", uniqueId("mallory"), "--url", urlOf(jwtServer));
      for (const c of [bad, devOnly]) {
        expect(await c.exitCode()).to.equal(1);
        expect(c.stderr).to.deep.equal(["connect failed: unauthorized"]);
        expect(c.stdout).to.deep.equal([]);
      }
    });

    it("connects with a valid token as the token's subject", async () => {
      const frank = uniqueId("frank");
      const c = cli("--token", await mintToken(frank), "--url", urlOf(jwtServer));
      await c.line(`connected as ${frank}`);
      await c.line("synced (0 delivered)");
      c.end();
      expect(await c.exitCode()).to.equal(0);
    });
  });

  it("runs group create, add, remove, rename and leave, and prints every member's view as a line", async () => {
    const [alice, bob, carol] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const url = urlOf(server);
    const a = cli("--user", alice, "--url", url);
    const b = cli("--user", bob, "--url", url);
    await Promise.all([a.line("synced (0 delivered)"), b.line("synced (0 delivered)")]);
    a.write(`group create "Friday plans" ${bob}`);
    await a.line(/^group created \S+ Friday plans$/);
    a.write(`group add "Friday plans" ${carol}`);
    await a.line(`group Friday plans: ${alice} added ${carol}`);
    await b.line(`group Friday plans: ${alice} added ${carol}`);
    a.write(`group rename "Friday plans" Saturday`);
    await a.line(`group Saturday: ${alice} renamed the group to Saturday`);
    await b.line(`group Saturday: ${alice} renamed the group to Saturday`);
    a.write(`group remove Saturday ${carol}`);
    await a.line(`group Saturday: ${alice} removed ${carol}`);
    // bob is no admin: the server's refusal, one line.
    b.write(`group remove Saturday ${alice}`);
    await b.line(/^error FORBIDDEN: /);
    b.write("group leave Saturday");
    await b.line(`group Saturday: ${bob} left`);
    await a.line(`group Saturday: ${bob} left`);
    a.write("group leave nowhere");
    await a.line(/^error: no group nowhere/);
  });
});
