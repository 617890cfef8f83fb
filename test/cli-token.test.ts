/**
 * `--token-command`: the CLI runs a shell command for a fresh token at connect, on
 * auth:expiring (auth:refresh), after the server's disconnect at exp, and after a refusal.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId, waitFor } from "./helpers/device";
import { ROOT } from "./helpers/processes";
import { startServer, TEST_SECRET, urlOf } from "./helpers/server";

const CLI = path.join(ROOT, "src/client/cli.ts");

/**
 * A stand-in for an identity provider's CLI: prints an HS256 token for $SUB valid $TTL
 * seconds, and logs each run. $BAD_RUNS (comma-separated run numbers) print garbage instead.
 */
const MINT = `
const crypto = require("node:crypto");
const fs = require("node:fs");
const run = (fs.existsSync(process.env.LOG) ? fs.readFileSync(process.env.LOG, "utf8").split("\\n").length - 1 : 0) + 1;
fs.appendFileSync(process.env.LOG, run + "\\n");
if ((process.env.BAD_RUNS || "").split(",").includes(String(run))) { console.log("not-a-token"); process.exit(0); }
const b = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
const body = b({ alg: "HS256", typ: "JWT" }) + "." + b({ sub: process.env.SUB, exp: Math.floor(Date.now() / 1000) + Number(process.env.TTL) });
console.log(body + "." + crypto.createHmac("sha256", process.env.SECRET).update(body).digest("base64url"));
`;

describe("CLI --token-command", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  let dir: string;
  const children: ChildProcess[] = [];

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url, { AUTH_MODE: "jwt", JWT_SECRET: TEST_SECRET, TOKEN_REFRESH_WINDOW_MS: "1500" });
    dir = mkdtempSync(path.join(os.tmpdir(), "ticks-token-command-"));
    writeFileSync(path.join(dir, "mint.cjs"), MINT);
  });
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  });
  after(async () => {
    await server.stop();
    await db.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts the CLI with the mint script as its token command; returns its stdout lines and the runs so far. */
  function start(sub: string, env: Record<string, string>) {
    const log = path.join(dir, `${sub}.log`);
    const lines: string[] = [];
    const child = spawn(
      process.execPath,
      ["--import", "tsx", CLI, "--url", urlOf(server), "--token-command", `"${process.execPath}" "${path.join(dir, "mint.cjs")}"`],
      { cwd: ROOT, stdio: "pipe", env: { ...process.env, SUB: sub, SECRET: TEST_SECRET, LOG: log, TTL: "3", ...env } },
    );
    children.push(child);
    let buffer = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      buffer += chunk;
      const parts = buffer.split("\n");
      buffer = parts.pop()!;
      lines.push(...parts);
    });
    const runs = () => {
      try {
        return readFileSync(log, "utf8").trim().split("\n").filter(Boolean).length;
      } catch {
        return 0;
      }
    };
    const line = (re: RegExp, count = 1) =>
      waitFor(() => lines.filter((l) => re.test(l)).length >= count, `${re} ×${count}\n${lines.join("\n")}`, 20_000);
    return { child, lines, runs, line };
  }

  it("refreshes before exp with a fresh token and stays connected past it", async () => {
    const sub = uniqueId("tc");
    const cli = start(sub, {});
    await cli.line(new RegExp(`^connected as ${sub}$`));
    await cli.line(/^token expiring at \S+$/);
    const firstExp = Date.parse(/^token expiring at (\S+)$/.exec(cli.lines.find((l) => l.startsWith("token expiring"))!)![1]!);
    await cli.line(/^token refreshed \(expires \S+\)$/);
    await waitFor(() => Date.now() > firstExp + 1000, "a second past the first token's exp");
    expect(cli.lines.filter((l) => l.startsWith("disconnected") || l === "token expired")).to.deep.equal([]);
    expect(cli.lines.filter((l) => l.startsWith("connected as"))).to.have.length(1);
    expect(cli.runs(), "one run at connect, one per refresh").to.be.at.least(2);
  });

  it("after a refused refresh: auth:expired, the server's disconnect, then a reconnect with a fresh token", async () => {
    const sub = uniqueId("tc");
    const cli = start(sub, { BAD_RUNS: "2" }); // run 1: connect; run 2: the refresh, refused
    await cli.line(/^error UNAUTHORIZED: /);
    await cli.line(/^token expired$/);
    await cli.line(/^disconnected: io server disconnect$/);
    await cli.line(new RegExp(`^connected as ${sub}$`), 2);
    expect(cli.runs()).to.be.at.least(3);
  });

  it("an unauthorized first handshake is tried again with a fresh token", async () => {
    const sub = uniqueId("tc");
    const cli = start(sub, { BAD_RUNS: "1", TTL: "3600" });
    await cli.line(/^synced \(0 delivered\)$/);
    expect(cli.lines.filter((l) => l.startsWith("connected as"))).to.have.length(1);
    expect(cli.runs()).to.equal(2);
  });

  it("gives up with exit 1 when every token is refused", async () => {
    const sub = uniqueId("tc");
    const cli = start(sub, { BAD_RUNS: "1,2,3,4,5,6" });
    const code = await new Promise((resolve) => cli.child.once("exit", resolve));
    expect(code).to.equal(1);
    expect(cli.runs()).to.equal(3);
  });
});
