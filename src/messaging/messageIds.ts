import { v7 as uuidv7 } from "uuid";
import { pooledRandomBytes } from "./randomPool";

/**
 * A message's id: a UUIDv7 stamped with the message's createdAt, taken from the injected
 * clock, so the id's time and created_at agree, and the id (the partition key of messages
 * and message_delivery) places the row in the partition of the day it was created
 * (docs/storage.md). Ids of one millisecond are not ordered among themselves; nothing
 * orders by id.
 */
export const messageIdAt = (createdAt: Date): string => uuidv7({ msecs: createdAt.getTime(), random: pooledRandomBytes(16) });
