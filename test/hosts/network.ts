/**
 * The bed's network: one Linux network namespace per "host", each with a veth pair whose
 * other end is on a bridge, all in a private range that exists only here. Every name starts
 * with `tkh` so leftovers of an aborted run can be found and removed by name.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

export const PREFIX = "tkh";
export const BRIDGE = `${PREFIX}-br0`;
/** The bridge's own address: where the test process (the clients' machine) sits. */
export const SUBNET = "10.231.77";
export const BRIDGE_IP = `${SUBNET}.1`;

export type HostName = "db" | "lb" | `app${number}`;

export const nsOf = (host: HostName): string => `${PREFIX}-${host}`;
const vethOf = (host: HostName): string => `${PREFIX}-${host}-b`;

/** Runs a command and returns its stdout; the error names the command and carries stderr. */
export async function sh(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: timeoutMs, encoding: "utf8" });
    return stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(" ")}: ${e.stderr?.trim() || e.message}`);
  }
}

/** Root, `ip netns`, nginx and nft: says plainly which is missing instead of failing later. */
export async function checkPrerequisites(): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      "npm run test:hosts must run as root: it creates network namespaces, veth pairs and a bridge (ip netns add). " +
        "Run it as root, as CI (.ci/run) does.",
    );
  }
  for (const bin of ["ip", "nginx", "nft", "redis-server"]) {
    await sh("sh", ["-c", `command -v ${bin}`]).catch(() => {
      throw new Error(`npm run test:hosts needs ${bin}: apt-get install -y nginx nftables redis-server iproute2 (.ci/run does)`);
    });
  }
  const probe = `${PREFIX}-probe`;
  await sh("ip", ["netns", "del", probe]).catch(() => {});
  try {
    await sh("ip", ["netns", "add", probe]);
  } catch (err) {
    throw new Error(`npm run test:hosts cannot create network namespaces here (${(err as Error).message}); it needs root with CAP_SYS_ADMIN`);
  }
  await sh("ip", ["netns", "del", probe]);
}

/** Kills every process still inside the namespace (by pid) and deletes it; absent: nothing. */
export async function removeNamespace(ns: string): Promise<void> {
  const list = await sh("ip", ["netns", "list"]);
  if (!list.split("\n").some((l) => l.split(" ")[0] === ns)) return;
  await killAllIn(ns);
  await sh("ip", ["netns", "del", ns]).catch(() => {});
}

/** SIGKILL to every process in the namespace, by pid: a host's power going off, minus its kernel. */
export async function killAllIn(ns: string): Promise<number[]> {
  const pids = (await sh("ip", ["netns", "pids", ns]).catch(() => ""))
    .split("\n")
    .map(Number)
    .filter((p) => p > 0);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      /* already gone */
    }
  }
  return pids;
}

export async function pidsIn(ns: string): Promise<number[]> {
  return (await sh("ip", ["netns", "pids", ns]).catch(() => ""))
    .split("\n")
    .map(Number)
    .filter((p) => p > 0);
}

/** Removes whatever an earlier run (or this one) left under our names. */
export async function removeNetwork(hosts: HostName[]): Promise<void> {
  for (const host of hosts) await removeNamespace(nsOf(host));
  const links = await sh("ip", ["-o", "link", "show"]);
  for (const match of links.matchAll(new RegExp(`^\\d+: (${PREFIX}-[\\w-]+?)(@\\S+)?:`, "gm"))) {
    await sh("ip", ["link", "del", match[1]!]).catch(() => {});
  }
}

/** The bridge (with the test process's address) and one namespace per host on it. */
export async function createNetwork(hosts: { name: HostName; ip: string }[]): Promise<void> {
  await sh("ip", ["link", "add", BRIDGE, "type", "bridge"]);
  await sh("ip", ["addr", "add", `${BRIDGE_IP}/24`, "dev", BRIDGE]);
  await sh("ip", ["link", "set", BRIDGE, "up"]);
  for (const { name, ip } of hosts) {
    const ns = nsOf(name);
    const outside = vethOf(name);
    const inside = `${PREFIX}-${name}-n`;
    await sh("ip", ["netns", "add", ns]);
    await sh("ip", ["link", "add", outside, "type", "veth", "peer", "name", inside]);
    await sh("ip", ["link", "set", inside, "netns", ns]);
    await sh("ip", ["link", "set", outside, "master", BRIDGE]);
    await sh("ip", ["link", "set", outside, "up"]);
    await sh("ip", ["-n", ns, "link", "set", inside, "name", "eth0"]);
    await sh("ip", ["-n", ns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
    await sh("ip", ["-n", ns, "link", "set", "eth0", "up"]);
    await sh("ip", ["-n", ns, "link", "set", "lo", "up"]);
  }
}

/**
 * A firewall rule inside the host's namespace that drops every packet to and from
 * `peer:port`, both ways: a network partition (no reset, no answer), as a broken switch or
 * security group would make it. heal() deletes the table again.
 */
export async function cut(host: HostName, peer: string, port: number): Promise<void> {
  const ns = nsOf(host);
  const table = `${PREFIX}_cut_${port}`;
  const script = [
    `table inet ${table} {`,
    `  chain out { type filter hook output priority 0; ip daddr ${peer} tcp dport ${port} drop; }`,
    `  chain in { type filter hook input priority 0; ip saddr ${peer} tcp sport ${port} drop; }`,
    `}`,
  ].join("\n");
  await sh("sh", ["-c", `ip netns exec ${ns} nft -f - <<'EOF'\n${script}\nEOF`]);
}

export async function heal(host: HostName, port: number): Promise<void> {
  await sh("ip", ["netns", "exec", nsOf(host), "nft", "delete", "table", "inet", `${PREFIX}_cut_${port}`]);
}
