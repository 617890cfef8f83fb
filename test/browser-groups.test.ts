import { expect } from "chai";
import type { Page } from "playwright-core";
import type { RunningTicks } from "../src/main";
import { connectAs, messageItems, useChromium } from "./helpers/browser";
import { createTestDatabase, type TestDatabase } from "./helpers/database";
import { uniqueId } from "./helpers/device";
import { startServer, urlOf } from "./helpers/server";

/**
 * The web page's groups, driven by their accessible names only: create a group, add and
 * remove a member, each change shown as a line in the chat, and the removed member's page
 * saying they can no longer send (the composer disabled).
 */
describe("web chat page: groups, in Chromium", function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let server: RunningTicks;
  const chromium = useChromium();

  async function signIn(user: string): Promise<Page> {
    const context = await chromium.newContext();
    const page = await context.newPage();
    await connectAs(page, urlOf(server), user);
    return page;
  }
  const messages = messageItems;
  const openGroup = (page: Page, title: string) =>
    page.getByRole("list", { name: "Conversations" }).getByRole("button", { name: title }).click();

  before(async () => {
    db = await createTestDatabase();
    server = await startServer(db.url);
  });
  after(async () => {
    await server?.stop();
    await db?.drop();
  });

  it("creates a group, adds and removes a member; the removed member can read but no longer send", async () => {
    const [alice, bob, carol] = ["alice", "bob", "carol"].map(uniqueId) as [string, string, string];
    const a = await signIn(alice);
    const b = await signIn(bob);
    const c = await signIn(carol);

    await a.getByLabel("Group title", { exact: true }).fill("Picnic");
    await a.getByLabel("Group members", { exact: true }).fill(bob);
    await a.getByRole("button", { name: "Create group" }).click();
    await a.getByRole("button", { name: "Add member" }).waitFor();
    await a.getByLabel("Member", { exact: true }).fill(carol);
    await a.getByRole("button", { name: "Add member" }).click();
    await messages(a).filter({ hasText: `you added ${carol}` }).waitFor();

    await a.getByLabel("Message", { exact: true }).fill("sandwiches?");
    await a.getByRole("button", { name: "Send" }).click();
    await openGroup(c, "Picnic");
    await messages(c).filter({ hasText: "sandwiches?" }).waitFor();
    await messages(c).filter({ hasText: `${alice} added you` }).waitFor();

    await a.getByLabel("Member", { exact: true }).fill(carol);
    await a.getByRole("button", { name: "Remove member" }).click();
    await messages(c).filter({ hasText: `${alice} removed you` }).waitFor();
    await c.getByText("You are no longer a member of this group").waitFor();
    expect(await c.getByRole("button", { name: "Send" }).isDisabled()).to.equal(true);
    expect(await c.getByLabel("Message", { exact: true }).isDisabled()).to.equal(true);

    // bob, still a member, sees every change as a line and can still send.
    await openGroup(b, "Picnic");
    await messages(b).filter({ hasText: `${alice} removed ${carol}` }).waitFor();
    expect(await b.getByRole("button", { name: "Send" }).isDisabled()).to.equal(false);
  });
});
