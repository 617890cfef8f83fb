/** Identifier grammars from the protocol. Kept in one place: the schemas and auth use them. */
export const USER_ID = /^[A-Za-z0-9._@-]{1,64}$/;
export const DEVICE_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** A push gateway's app id, reverse-DNS style (e.g. `com.example.chat.ios`). */
export const APP_ID = /^[A-Za-z0-9._:-]{1,64}$/;
export const CLIENT_MSG_ID = /^[A-Za-z0-9._:-]{1,64}$/;
/** Server ids are UUIDs (v7); anything else cannot name a message or conversation. */
export const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

/** A media type as `type/subtype` (RFC 6838 restricted names), no parameters. */
export const MIME = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** A media thumbnail: a base64 data URL of a raster image (never SVG: no active content). */
export const THUMBNAIL = /^data:image\/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/]+={0,2}$/;

export function isUserId(value: unknown): value is string {
  return typeof value === "string" && USER_ID.test(value);
}
