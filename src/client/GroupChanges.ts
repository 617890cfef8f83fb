/**
 * The SDK's group membership changes (TicksClient.addMembers, removeMember, leave, rename,
 * setRole): each request under one clientMsgId, retried with it after a lost answer (a
 * timeout, UNAVAILABLE), so a change can never apply twice; its `group` entry then goes
 * the way of a live one, so the summary and messages() show it as soon as it is back.
 */
import { v4 as uuidv4 } from "uuid";
import type { ChatMessage } from "./entries";
import { RequestTimeout, ServerError, type OkOf, type RequestOf } from "./request";

export type GroupEvent = "group:add" | "group:remove" | "group:leave" | "group:update" | "group:role";

/** Retries after a lost answer; refusals (FORBIDDEN, BAD_REQUEST…) are thrown at once. */
const ATTEMPTS = 3;

export class GroupChanges {
  constructor(
    private readonly call: <E extends GroupEvent>(event: E, payload: RequestOf<E>) => Promise<OkOf<E>>,
    private readonly received: (entry: ChatMessage) => Promise<void>,
  ) {}

  async change<E extends GroupEvent>(event: E, payload: Omit<RequestOf<E>, "clientMsgId">): Promise<ChatMessage> {
    const request = { ...payload, clientMsgId: uuidv4() } as RequestOf<E>;
    for (let attempt = 1; ; attempt++) {
      try {
        const entry = ((await this.call(event, request)) as { message: ChatMessage }).message;
        await this.received(entry);
        return entry;
      } catch (err) {
        const lost = err instanceof RequestTimeout || (err instanceof ServerError && err.code === "UNAVAILABLE");
        if (!lost || attempt >= ATTEMPTS) throw err;
      }
    }
  }
}
