/**
 * The group calls of TicksClient, a layer between the connection (ClientBase) and the rest
 * of the client: creating a group, and the membership and title changes (GroupChanges.ts),
 * each resolving the `group` entry it wrote; admins only, but leave().
 */
import type { GroupRole } from "../protocol/events";
import { ClientBase } from "./ClientBase";
import type { ChatMessage } from "./entries";
import type { GroupChanges } from "./GroupChanges";

export abstract class GroupClient extends ClientBase {
  protected abstract readonly groups: GroupChanges;

  async createGroup(title: string, members: string[]): Promise<string> {
    return (await this.call("group:create", { title, members })).conversationId;
  }
  addMembers(conversationId: string, userIds: string[]): Promise<ChatMessage> {
    return this.groups.change("group:add", { conversationId, userIds });
  }
  removeMember(conversationId: string, userId: string): Promise<ChatMessage> {
    return this.groups.change("group:remove", { conversationId, userId });
  }
  leave(conversationId: string): Promise<ChatMessage> {
    return this.groups.change("group:leave", { conversationId });
  }
  rename(conversationId: string, title: string): Promise<ChatMessage> {
    return this.groups.change("group:update", { conversationId, title });
  }
  setRole(conversationId: string, userId: string, role: GroupRole): Promise<ChatMessage> {
    return this.groups.change("group:role", { conversationId, userId, role });
  }
}
