// Capability system: spaces, capabilities, range descriptors and the mapping database.
export * from "./rights.js";
export * from "./capability.js";
export * from "./crd.js";
export * from "./mapping.js";
export * from "./space.js";
export * from "./mdb.js";
