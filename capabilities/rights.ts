// Rights masks of capabilities, one set per kind of object. A right is a bit; delegation ANDs.

/** Protection domain: which objects its holder may create inside it, and whether it may delegate into it. */
export const PdRights = { CREATE_PD: 1, CREATE_EC: 2, CREATE_SC: 4, CREATE_PT: 8, CREATE_SM: 16, DELEGATE: 32, ALL: 63 } as const;
/** Execution context: control (recall) and binding portals / scheduling contexts to it. */
export const EcRights = { CONTROL: 1, CREATE_PT: 2, CREATE_SC: 4, ALL: 7 } as const;
/** Scheduling context: control (read consumed time). */
export const ScRights = { CONTROL: 1, ALL: 1 } as const;
/** Portal: call it, or control it (set its id). */
export const PtRights = { CALL: 1, CONTROL: 2, ALL: 3 } as const;
/** Semaphore: up and down are separate rights, so a producer cannot consume. */
export const SmRights = { UP: 1, DOWN: 2, ASSIGN: 4, ALL: 7 } as const;
/** Memory pages. */
export const MemRights = { R: 1, W: 2, X: 4, ALL: 7 } as const;
/** I/O ports: a port is either accessible or not. */
export const IoRights = { ACCESS: 1, ALL: 1 } as const;
