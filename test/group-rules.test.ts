import { expect } from "chai";
import { judgeGroupChange, succession, type GroupMember, type GroupState, type GroupVerdict } from "../src/messaging/groupRules";

/** The membership rules alone (the store applies them under the conversation's lock). */
describe("group rules (judgeGroupChange)", () => {
  const at = (minute: number) => new Date(Date.UTC(2026, 11, 2, 10, minute));
  const member = (userId: string, role: "admin" | "member", minute: number): GroupMember => ({ userId, role, joinedAt: at(minute) });
  const group = (...members: GroupMember[]): GroupState => ({ kind: "group", members });
  const base = () => group(member("alice", "admin", 0), member("bob", "member", 0), member("carol", "member", 1));
  const refused = (v: GroupVerdict, code: string) => {
    expect(v.ok, JSON.stringify(v)).to.equal(false);
    if (!v.ok) expect(v.error.code).to.equal(code);
  };
  const plan = (v: GroupVerdict) => {
    if (!v.ok) throw new Error(`refused: ${v.error.code} ${v.error.message}`);
    return v.plan;
  };

  it("refuses an unknown conversation (NOT_FOUND), a direct one and a non-member (FORBIDDEN)", () => {
    refused(judgeGroupChange("alice", { action: "leave" }, undefined, 10), "NOT_FOUND");
    refused(judgeGroupChange("alice", { action: "add", userIds: ["x"] }, { kind: "direct", members: base().members }, 10), "FORBIDDEN");
    refused(judgeGroupChange("mallory", { action: "leave" }, base(), 10), "FORBIDDEN");
  });

  it("lets only admins add, remove, rename and change roles", () => {
    for (const command of [
      { action: "add", userIds: ["dave"] },
      { action: "remove", userId: "carol" },
      { action: "title", title: "t" },
      { action: "role", userId: "carol", role: "admin" },
    ] as const) {
      refused(judgeGroupChange("bob", command, base(), 10), "FORBIDDEN");
      expect(judgeGroupChange("alice", command, base(), 10).ok, command.action).to.equal(true);
    }
  });

  it("adds only new users, refuses none new and anything past the limit as a whole", () => {
    const p = plan(judgeGroupChange("alice", { action: "add", userIds: ["bob", "dave", "dave", "erin"] }, base(), 5));
    expect(p.added).to.deep.equal(["dave", "erin"]);
    expect(p.change).to.deep.equal({ action: "add", userIds: ["dave", "erin"], title: null, role: null });
    expect(p.recipients.sort()).to.deep.equal(["bob", "carol", "dave", "erin"]);
    refused(judgeGroupChange("alice", { action: "add", userIds: ["bob", "carol"] }, base(), 5), "BAD_REQUEST");
    refused(judgeGroupChange("alice", { action: "add", userIds: ["dave", "erin", "frank"] }, base(), 5), "BAD_REQUEST");
  });

  it("removes a member, who still gets the entry; refuses removing a non-member", () => {
    const p = plan(judgeGroupChange("alice", { action: "remove", userId: "bob" }, base(), 10));
    expect(p.removed).to.deep.equal(["bob"]);
    expect(p.recipients.sort()).to.deep.equal(["bob", "carol"]);
    refused(judgeGroupChange("alice", { action: "remove", userId: "zed" }, base(), 10), "BAD_REQUEST");
  });

  it("treats removing oneself as leaving, which any member may do", () => {
    const p = plan(judgeGroupChange("carol", { action: "leave" }, base(), 10));
    expect(p.change).to.deep.equal({ action: "leave", userIds: ["carol"], title: null, role: null });
    expect(p.recipients.sort()).to.deep.equal(["alice", "bob"]);
    const self = plan(judgeGroupChange("alice", { action: "remove", userId: "alice" }, group(member("alice", "admin", 0), member("bob", "admin", 0)), 10));
    expect(self.change.action).to.equal("leave");
  });

  it("hands the last admin's role to the longest-standing remaining member when they leave", () => {
    const g = group(member("alice", "admin", 0), member("zoe", "member", 1), member("bob", "member", 2), member("amy", "member", 1));
    const p = plan(judgeGroupChange("alice", { action: "leave" }, g, 10));
    // zoe and amy joined at the same minute: the user id breaks the tie, so every node agrees.
    expect(p.change).to.deep.equal({ action: "leave", userIds: ["alice", "amy"], title: null, role: "admin" });
    expect(p.roles).to.deep.equal([{ userId: "amy", role: "admin" }]);
    // Another admin remains: nobody is promoted. The last member leaving: nobody to promote.
    expect(plan(judgeGroupChange("alice", { action: "leave" }, group(member("alice", "admin", 0), member("bob", "admin", 3)), 10)).roles).to.deep.equal([]);
    expect(plan(judgeGroupChange("alice", { action: "leave" }, group(member("alice", "admin", 0)), 10)).recipients).to.deep.equal([]);
  });

  it("refuses the last admin demoting themselves, and a role someone already has", () => {
    refused(judgeGroupChange("alice", { action: "role", userId: "alice", role: "member" }, base(), 10), "FORBIDDEN");
    refused(judgeGroupChange("alice", { action: "role", userId: "bob", role: "member" }, base(), 10), "BAD_REQUEST");
    refused(judgeGroupChange("alice", { action: "role", userId: "zed", role: "admin" }, base(), 10), "BAD_REQUEST");
    const two = group(member("alice", "admin", 0), member("bob", "admin", 0));
    expect(plan(judgeGroupChange("alice", { action: "role", userId: "alice", role: "member" }, two, 10)).change).to.deep.equal({
      action: "role",
      userIds: ["alice"],
      title: null,
      role: "member",
    });
  });

  it("orders succession by joining time, then user id", () => {
    expect(succession([member("b", "member", 2), member("c", "member", 1), member("a", "member", 1)]).map((m) => m.userId)).to.deep.equal([
      "a",
      "c",
      "b",
    ]);
  });
});
