/** Identifier grammars from the protocol. Kept in one place: the schemas and auth use them. */
export const USER_ID = /^[A-Za-z0-9._@-]{1,64}$/;
export const DEVICE_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** A push gateway's app id, reverse-DNS style (e.g. `com.example.chat.ios`). */
export const APP_ID = /^[A-Za-z0-9._:-]{1,64}$/;
export const CLIENT_MSG_ID = /^[A-Za-z0-9._:-]{1,64}$/;
/** Server ids are UUIDs (v7); anything else cannot name a message or conversation. */
export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export function isUserId(value: unknown): value is string {
  return typeof value === "string" && USER_ID.test(value);
}
