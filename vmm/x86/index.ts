// The shared x86 emulation core: an i686 integer CPU behind the kernel's VcpuEngine contract.

import type { GuestMemory } from "../../kernel/guest-memory.js";
import type { VcpuEngine, VcpuEngineFactory } from "../../kernel/vcpu.js";
import { X86Engine } from "./engine.js";

export { disassemble } from "./disasm.js";
export { X86Engine } from "./engine.js";
export type { Fpu } from "./fpu.js";

/** Create a vCPU engine on guest-physical memory `memory`. */
export const createX86Engine: VcpuEngineFactory = (memory: GuestMemory): VcpuEngine => new X86Engine(memory);
