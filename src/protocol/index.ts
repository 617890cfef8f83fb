export * from "./events";
export * from "./errors";
export * from "./ids";
