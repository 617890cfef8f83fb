import { execFile } from "node:child_process";
import path from "node:path";
import { expect } from "chai";
import { freePort, ROOT } from "./helpers/processes";

/** Runs the check `npm test` starts with (the pretest script) against these URLs. */
function check(env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", path.join(ROOT, "test/prerequisites.ts")],
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: 20_000 },
      (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr }),
    );
  });
}

describe("npm test's prerequisites check", function () {
  this.timeout(30_000);

  it("passes silently when PostgreSQL and Redis answer", async () => {
    expect(await check({})).to.deep.equal({ code: 0, stdout: "", stderr: "" });
  });

  it("fails at once with one line per missing service, saying what to start, and no stack trace", async () => {
    const [pgPort, redisPort] = [await freePort(), await freePort()];
    const result = await check({
      TEST_DATABASE_ADMIN_URL: `postgres://postgres@127.0.0.1:${pgPort}/postgres`,
      TEST_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    });
    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal("");
    expect(result.stderr.trimEnd().split("\n")).to.deep.equal([
      `npm test needs PostgreSQL at postgres://postgres@127.0.0.1:${pgPort}/postgres (ECONNREFUSED): start it (Debian: pg_ctlcluster <version> main start), or point TEST_DATABASE_ADMIN_URL at one that does.`,
      `npm test needs Redis at redis://127.0.0.1:${redisPort} (ECONNREFUSED): start it (redis-server --daemonize yes), or point TEST_REDIS_URL at one that does.`,
    ]);
  });

  it("names only the one that is missing", async () => {
    const result = await check({ TEST_REDIS_URL: `redis://127.0.0.1:${await freePort()}` });
    expect(result.code).to.equal(1);
    expect(result.stderr.trimEnd().split("\n")).to.have.length(1);
    expect(result.stderr).to.match(/^npm test needs Redis at /);
  });
});
