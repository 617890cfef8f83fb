import type { ChatMessage } from "./entries";
import type { Conversations } from "./Conversations";

/** message:read takes at most this many ids. */
const READ_CHUNK = 500;

/**
 * Marks every unread message from others in the conversation read: `message:read` in
 * chunks, then the count the server knew drops to what is still unread (a message that
 * arrived meanwhile stays unread). Returns how many changed state on the server.
 */
export async function markConversationRead(
  conversationId: string,
  conversations: Conversations,
  held: ChatMessage[],
  read: (messageIds: string[]) => Promise<number>,
): Promise<number> {
  // A conversation loaded after the list came (or again after it was dropped): its unread ids are the newest held.
  conversations.adoptUnread(conversationId, held);
  const ids = conversations.unread(conversationId);
  let updated = 0;
  for (let i = 0; i < ids.length; i += READ_CHUNK) {
    const chunk = ids.slice(i, i + READ_CHUNK);
    updated += await read(chunk);
    conversations.read(chunk);
  }
  conversations.allRead(conversationId);
  return updated;
}
