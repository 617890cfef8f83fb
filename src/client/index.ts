/** The Ticks client SDK: what `import … from "ticks/client"` and /sdk/ticks-client.js export. */
export { TicksClient, type TicksClientOptions, type TicksClientEvents, type LocalMessage, type SendMediaOptions } from "./TicksClient";
export { MemoryOutboxStorage, type OutboxStorage, type PendingEntry, type PendingAction } from "./OutboxStorage";
export { IndexedDbOutboxStorage } from "./IndexedDbOutboxStorage";
export { OutboxStorageError } from "./Outbox";
export { ContentTooLargeError, checkContent, codePoints, maxPacketBytes } from "./limits";
export { RequestTimeout, ServerError, type ClientSocket, type ReplyOf, type RequestOf } from "./request";
export { subjectOf } from "./token";
export type { ChatMessage } from "./entries";
export { applyGroupChange, describeGroupChange } from "./groupEntries";
export type { MessageStatus, StatusChange } from "./StatusTracker";
export type { MessageSource } from "./ConversationSync";
export type * from "../protocol/events";
