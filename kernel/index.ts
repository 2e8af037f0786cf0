// The kernel's public face: what components, the VMM and tests import.
export { Kernel, Sel, type KernelOptions, type Fault } from "./kernel.js";
export { ReplyToken, MAX_CALL_DEPTH } from "./portal.js";
export { Sys, type CreatePdOptions } from "./sys.js";
export { Status, statusName } from "./status.js";
export { Hypercall, EcCtrlOp, SmCtrlOp } from "./hypercalls.js";
export { MAX_PRIORITY, MAX_QUANTUM_NS } from "./sc.js";
export { EcKind, EcState, type PortalHandler, type EcBody, type Wait, type LocalEntry, type GlobalEntry } from "./ec.js";
export { Utcb, UTCB_WORDS, packBytes, unpackBytes, type TypedItem, type ReceivedItem } from "./utcb.js";
export { KernelMemoryCost } from "./object.js";
export { MAX_FRAMES, CHUNK_FRAMES, frameChunk } from "./frames.js";
export { MemoryView, MemoryRevokedError } from "./memory-view.js";
export { WorkerLink, serveLink, newMailbox, MAILBOX_PAYLOAD, type CallOutcome } from "./worker-link.js";
export { GuestMemory, PAGE_SIZE, PAGE_SHIFT } from "./guest-memory.js";
export { type HostTimeSource } from "./clock.js";
export { type TraceSink } from "./trace.js";
export * from "./vcpu.js";
export { type Crd, crd, alignedRuns, SpaceKind, PdRights, EcRights, ScRights, PtRights, SmRights, MemRights, IoRights } from "../capabilities/index.js";
