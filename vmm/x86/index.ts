// The shared x86 emulation core: an i686 CPU with its x87 FPU behind the kernel's VcpuEngine contract.

import type { GuestMemory } from "../../kernel/guest-memory.js";
import type { VcpuEngine, VcpuEngineFactory } from "../../kernel/vcpu.js";
import { X86Engine } from "./engine.js";
import { X87 } from "./fpu/x87.js";

export { disassemble } from "./disasm.js";
export { X86Engine } from "./engine.js";
export type { Fpu } from "./fpu/hook.js";

export interface X86EngineOptions {
  /** Plug in the x87 unit (default true). */
  fpu?: boolean;
  /** Translate hot blocks into JS functions (default true; false: interpret only). */
  translate?: boolean;
}

/** Create a vCPU engine on guest-physical memory `memory`, with the x87 FPU unless told otherwise. */
export function createX86Engine(memory: GuestMemory, options: X86EngineOptions = {}): VcpuEngine {
  const engine = new X86Engine(memory);
  if (options.fpu !== false) engine.cpu.fpu = new X87();
  if (options.translate === false) engine.translate = false;
  return engine;
}

/** The factory the kernel takes. */
export const x86EngineFactory: VcpuEngineFactory = (memory) => createX86Engine(memory);
