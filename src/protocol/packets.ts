/**
 * The largest Socket.IO packet a server accepts (its maxHttpBufferSize) for a given
 * MAX_CONTENT_LENGTH: room for the JSON envelope around the largest content, at 4 bytes a
 * code point. A bigger packet is not answered: the server closes the connection. The SDK
 * uses the same formula to refuse such content before sending it.
 */
export const maxPacketBytes = (maxContentLength: number): number => Math.max(64 * 1024, maxContentLength * 4 + 16 * 1024);
