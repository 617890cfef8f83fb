import { expect } from "chai";
import { describeGroupChange } from "../src/client/groupEntries";
import type { RunningTicks } from "../src/main";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/device";
import { SdkClients, waitFor } from "./helpers/sdk";
import { startServer, urlOf } from "./helpers/server";

/** The SDK's group changes against a real server: entries, summaries, and the chat lines. */
describe("SDK group changes (addMembers, removeMember, leave, rename, setRole)", function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let server: RunningTicks;
  const clients = new SdkClients();

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url);
  });
  afterEach(() => clients.closeAll());
  after(async () => {
    await server.stop();
    await db.drop();
  });

  it("applies each change to the summaries of everyone concerned, and holds the entries as chat lines", async () => {
    const [a, b, c] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const alice = await clients.connected(urlOf(server), { userId: a });
    const bob = await clients.connected(urlOf(server), { userId: b });
    const carol = await clients.connected(urlOf(server), { userId: c });
    const group = await alice.createGroup("plans", [b]);
    await waitFor(() => bob.conversations().some((x) => x.id === group), "bob sees the group");

    const added = await alice.addMembers(group, [c]);
    expect(describeGroupChange(added)).to.equal(`${a} added ${c}`);
    await waitFor(() => carol.conversations().find((x) => x.id === group)?.member === true, "carol is a member");
    await waitFor(() => bob.conversations().find((x) => x.id === group)?.members.includes(c) === true, "bob sees carol");

    await alice.rename(group, "Friday");
    await alice.setRole(group, b, "admin");
    await waitFor(() => bob.conversations().find((x) => x.id === group)?.title === "Friday", "bob sees the title");
    await waitFor(() => bob.conversations().find((x) => x.id === group)?.admins.includes(b) === true, "bob is admin");

    await bob.removeMember(group, c);
    await waitFor(() => carol.conversations().find((x) => x.id === group)?.member === false, "carol is no longer a member");
    const lines = carol.messages(group).filter((m) => m.kind === "group").map((m) => describeGroupChange(m));
    expect(lines).to.deep.equal([`${a} added ${c}`, `${a} renamed the group to Friday`, `${a} made ${b} an admin`, `${b} removed ${c}`]);
    const refused = await carol.leave(group).then(
      () => null,
      (err: Error & { code?: string }) => err.code,
    );
    expect(refused).to.equal("FORBIDDEN");

    // alice leaves; bob is admin already, so nobody is promoted.
    const left = await alice.leave(group);
    expect(describeGroupChange(left)).to.equal(`${a} left`);
    await waitFor(() => bob.conversations().find((x) => x.id === group)?.members.join() === [b].join(), "bob alone");
    expect(alice.conversations().find((x) => x.id === group)).to.deep.include({ member: false, members: [], admins: [] });
  });
});
