import { expect } from "chai";
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { ROOT } from "../helpers/processes";

const run = promisify(execFile);

/** Not root: the bed says so in one sentence instead of failing half-way through `ip netns add`. */
describe("hosts: the test bed's prerequisites", () => {
  it("refuses to start without root, with a message that says why", async () => {
    const script = `import("${path.join(ROOT, "test/hosts/network.ts")}").then((m) => (m.checkPrerequisites ? m : m.default).checkPrerequisites()).then(() => console.log("started"), (e) => console.log(e.message))`;
    const { stdout } = await run("runuser", ["-u", "nobody", "--", process.execPath, "--import", "tsx", "-e", script], {
      cwd: ROOT,
      env: { ...process.env, HOME: "/tmp" },
    });
    expect(stdout).to.match(/must run as root: it creates network namespaces/);
  });
});
