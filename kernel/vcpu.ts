// The contract between the kernel and a virtual CPU engine (the x86 core implements it).
//
// A vCPU EC is run by a `VcpuEngine`. The engine executes guest code until something happens that
// it cannot finish alone; then it *exits*. Exits come in two kinds:
//  - boundary exits (HLT, interrupt window, exception, triple fault, recall, budget): `run()`
//    returns the reason at an instruction boundary;
//  - synchronous exits (port I/O, MMIO, CPUID, MSR, VMCALL): the engine calls
//    `VcpuExitHandler.exit()` in the middle of the instruction and completes it with the answer
//    (no restart, no re-decode).
// For every exit except BUDGET the kernel calls the VMM's portal at selector
// `eventBase + reason`, moving exactly the state groups the portal's MTD selects into the UTCB
// and, when the VMM replies, back into the engine.

/** Why a vCPU left guest mode. The value is the offset of the handling portal from the event base. */
export enum ExitReason {
  /** First run: the VMM sets the initial register state. */
  STARTUP = 0,
  /** IN/OUT/INS/OUTS: the port in `qual.address`, and `qual.size`, `qual.write`, `qual.data`. Synchronous. */
  PIO = 1,
  /** Access to a guest-physical address that is not writable/readable RAM. Synchronous. */
  MMIO = 2,
  /**
   * The vCPU waits for an external interrupt: HLT, or a freeze at a waiting x87 instruction with
   * an unmasked x87 exception pending under CR0.NE = 0 and IGNNE# inactive (EIP stays at it).
   * The vCPU waits for the VMM's reply.
   */
  HLT = 3,
  /**
   * CPUID, when the VMM asked for CPUID exits (`ctrl.cpuidExits`), or of a hypervisor leaf
   * (0x40000000-0x4fffffff) when it offers them (`ctrl.hypervisorLeaves`). Synchronous.
   */
  CPUID = 4,
  /** The guest can take an external interrupt now (EFLAGS.IF=1, no shadow), as requested. */
  INTR_WINDOW = 5,
  /** A guest exception whose vector is set in `ctrl.exceptionBitmap`. */
  EXCEPTION = 6,
  /** The kernel was asked to recall the vCPU (ec_ctrl recall): usually to inject an interrupt. */
  RECALL = 7,
  /** Triple fault (or shutdown): the VMM normally resets the VM. */
  TRIPLE_FAULT = 8,
  /**
   * The engine cannot go on; the VMM decides what to do. `qual.address` holds an
   * InvalidStateCause, `qual.linear` the linear address it concerns (if any).
   */
  INVALID_STATE = 9,
  /** The instruction budget of this run is used up; handled by the scheduler, no portal call. */
  BUDGET = 10,
  /**
   * The x87's FERR# output changed level (`ferr`, STA group), when the VMM asked for these exits
   * (`ctrl.ferrExits`): after the instruction that flagged an unmasked x87 exception, or that
   * cleared it. A PC routes FERR# to IRQ 13 and answers port F0h with IGNNE#.
   */
  FERR = 11,
  /**
   * RDMSR/WRMSR of an MSR the engine does not implement, when the VMM asked (`ctrl.msrExits`);
   * without, such an access raises #GP(0). The index in `qual.address`, `qual.write`, the value
   * in `qual.data` (bits 31:0) and `qual.edx` (63:32), `qual.size` 8. The reply answers a read
   * in `data`/`edx`, or refuses the access (`qual.refused`: the instruction raises #GP(0)). Synchronous.
   */
  MSR = 12,
  /**
   * VMCALL (0F 01 C1), when the VMM asked (`ctrl.vmcallExits`); without, it raises #UD as on a
   * processor outside VMX operation. Synchronous (a hypercall should not cost the run): the VMM
   * reads the hypercall's registers (KVM's ABI: number in EAX, also in `qual.address`, arguments
   * in EBX, ECX, EDX, ESI) and answers the result in `qual.data`, which becomes EAX.
   */
  VMCALL = 13,
}

/** Why an engine stopped with INVALID_STATE (`qual.address` of that exit). */
export enum InvalidStateCause {
  /** The engine itself failed (a bug in it): nothing the guest did is known to be wrong. */
  ENGINE_ERROR = 0,
  /** An instruction was to be fetched from an address that is not RAM or ROM (`qual.linear`). */
  FETCH_OUTSIDE_RAM = 1,
}

/** Number of exit reasons; a VMM's event range for one vCPU is this many selectors. */
export const EXIT_REASON_COUNT = 14;

/**
 * Message transfer descriptor: which groups of vCPU state move between engine and UTCB.
 * The names follow NOVA's MTD words.
 */
export const Mtd = {
  GPR_ACDB: 1 << 0, // eax ecx edx ebx
  GPR_BSD: 1 << 1, // ebp esi edi
  ESP: 1 << 2,
  EIP_LEN: 1 << 3, // eip and instruction length of the exiting instruction
  EFLAGS: 1 << 4,
  DS_ES: 1 << 5,
  FS_GS: 1 << 6,
  CS_SS: 1 << 7,
  TR: 1 << 8,
  LDTR: 1 << 9,
  GDTR: 1 << 10,
  IDTR: 1 << 11,
  CR: 1 << 12, // cr0 cr2 cr3 cr4
  DR: 1 << 13, // dr0-3 dr6 dr7
  SYSENTER: 1 << 14, // sysenter cs/esp/eip MSRs
  QUAL: 1 << 15, // exit qualification (read-only except the answers: `data`, `ebx`/`ecx`/`edx`, `refused`, `ramUnchanged`)
  CTRL: 1 << 16, // exit controls (exception bitmap, cpuid/msr/vmcall exits, hypervisor leaves)
  INJ: 1 << 17, // event injection and interrupt-window request
  STA: 1 << 18, // interruptibility and activity state, x87 error pins
  TSC: 1 << 19, // time stamp counter
  FPU: 1 << 20, // x87 state as an FXSAVE image
  MSR: 1 << 21, // the other MSRs with state: IA32_APIC_BASE; and the initial APIC ID
  ALL: (1 << 22) - 1,
} as const;

/** A segment register with its hidden descriptor cache. */
export interface SegmentState {
  selector: number;
  base: number;
  limit: number;
  /** Descriptor attribute bits as VMX packs them: type[3:0] S[4] DPL[6:5] P[7] AVL[12] D/B[14] G[15], bit 16 = unusable. */
  attributes: number;
}

/** Injection types of `inj.type`. */
export const InjectionType = { EXTERNAL: 0, NMI: 2, HARDWARE_EXCEPTION: 3, SOFTWARE_INTERRUPT: 4 } as const;

/** The vCPU state that can travel in a UTCB; which parts are valid is given by the MTD. */
export class VcpuState {
  mtd = 0;
  // GPR_ACDB / GPR_BSD / ESP
  eax = 0; ecx = 0; edx = 0; ebx = 0; esp = 0; ebp = 0; esi = 0; edi = 0;
  // EIP_LEN / EFLAGS
  eip = 0; instructionLength = 0; eflags = 2;
  // segment groups
  es = seg(); cs = seg(); ss = seg(); ds = seg(); fs = seg(); gs = seg(); ldtr = seg(); tr = seg();
  gdtrBase = 0; gdtrLimit = 0xffff; idtrBase = 0; idtrLimit = 0xffff;
  // CR / DR / SYSENTER / TSC
  cr0 = 0x60000010; cr2 = 0; cr3 = 0; cr4 = 0;
  dr0 = 0; dr1 = 0; dr2 = 0; dr3 = 0; dr6 = 0xffff0ff0; dr7 = 0x400;
  sysenterCs = 0; sysenterEsp = 0; sysenterEip = 0;
  tsc = 0n;
  // MSR
  /** IA32_APIC_BASE; 0: the vCPU has no local APIC (no such MSR, CPUID.1:EDX.APIC clear). */
  apicBase = 0xfee00900;
  /** The initial APIC ID (CPUID.1:EBX[31:24]): which vCPU of its VM this is. */
  apicId = 0;
  // QUAL: what caused the exit
  qual = {
    /** PIO: port; MMIO: guest-physical address; EXCEPTION: vector; CPUID: leaf (eax). */
    address: 0,
    /** Access size in bytes (1, 2, 4; MMIO also 8 for CMPXCHG8B and friends). */
    size: 0,
    write: false,
    /** Value written by the guest, or (in the reply) the value a read returns. CPUID: ecx in, eax out. */
    data: 0,
    /** CPUID replies: ebx, ecx, edx (eax travels in `data`). EXCEPTION: error code in `errorCode`. */
    ebx: 0, ecx: 0, edx: 0,
    errorCode: 0,
    /** Guest-linear address for page faults. */
    linear: 0,
    /** MSR replies: the MSR does not exist for this VM (the instruction raises #GP(0)). */
    refused: false,
    /**
     * PIO and MMIO replies: the access took this many ns of VM time on the device's bus (0: none).
     * The vCPU waits that long inside the instruction, as a CPU does for a slow bus cycle.
     */
    accessNs: 0,
    /**
     * VMCALL replies: the VMM wrote no guest RAM while it handled the exit, so code the engine
     * cached is as it was (false: it may have, and the engine looks at its cached code again).
     */
    ramUnchanged: false,
  };
  // CTRL
  exceptionBitmap = 0;
  cpuidExits = false;
  /** Exit with FERR when the x87's FERR# output changes level. */
  ferrExits = false;
  /**
   * The VMM offers hypervisor CPUID leaves: CPUID.1:ECX bit 31 (hypervisor present) reads 1 and
   * leaves 0x40000000-0x4fffffff are CPUID exits (answered by the VMM).
   */
  hypervisorLeaves = false;
  /** RDMSR/WRMSR of MSRs the engine does not implement exit (MSR) instead of raising #GP(0). */
  msrExits = false;
  /** VMCALL exits (VMCALL) instead of raising #UD. */
  vmcallExits = false;
  // INJ: event to deliver at the next instruction boundary where it can be taken
  inj = { valid: false, vector: 0, type: 0, errorCode: -1 as number, requestWindow: false };
  // STA
  /** Bit 0: blocking by STI, bit 1: blocking by MOV SS, bit 3: blocking by NMI. */
  interruptibility = 0;
  /** 0 active, 1 halted (HLT or an x87 freeze), 2 shutdown. */
  activity = 0;
  /** The x87's FERR# output: an unmasked exception is flagged (status word ES). Read-only. */
  ferr = false;
  /**
   * The IGNNE# input: with CR0.NE = 0, waiting x87 instructions ignore a pending exception
   * instead of freezing. The VMM drives it (on a PC: port F0h written while FERR# is asserted,
   * dropped when FERR# goes away).
   */
  ignne = false;
  // FPU
  fpu: Uint8Array | null = null;
}

function seg(): SegmentState {
  return { selector: 0, base: 0, limit: 0xffff, attributes: 0x93 };
}

/** Answers synchronous exits in the middle of an instruction (the kernel's portal call). */
export interface VcpuExitHandler {
  /**
   * Called by the engine with `state.qual` filled in. Returns after the VMM replied; for reads,
   * `state.qual.data` (and for CPUID `ebx/ecx/edx`) hold the answer. Returns false when the
   * exit could not be delivered (no portal, VMM gone): the engine then treats a read as
   * all-ones and a write as dropped, and carries on.
   */
  exit(reason: ExitReason, state: VcpuState): boolean;
  /**
   * Set when the VMM recalled the vCPU (usually while answering a synchronous exit, to inject an
   * interrupt). Engines check it after each synchronous exit and, when set, end the run after
   * the current instruction, returning BUDGET; the kernel then delivers the RECALL exit.
   */
  readonly stopRequested?: boolean;
}

/** What the kernel needs of a virtual CPU. Implemented by `vmm/x86`. */
export interface VcpuEngine {
  /**
   * Run for at most `budget` retired instructions. Synchronous exits go through `exits`;
   * the return value is the boundary exit that stopped the run (BUDGET when it ran out).
   */
  run(budget: number, exits: VcpuExitHandler): ExitReason;
  /**
   * Instruction times since the engine was created: instructions retired plus the times it
   * stalled (drives virtual time and RDTSC).
   */
  readonly retired: number;
  /**
   * Called by the kernel during a synchronous exit whose access took time (`qual.accessNs`): the
   * current instruction takes `instructionTimes` longer. They count as retired at once (virtual
   * time, the TSC) and against the run's budget; the run goes on after the instruction.
   */
  stall(instructionTimes: number): void;
  /** Copy the state groups in `mtd` out of the engine into `to` (also sets `to.mtd`). */
  saveState(mtd: number, to: VcpuState): void;
  /** Copy the state groups in `mtd` from `from` into the engine. */
  loadState(mtd: number, from: VcpuState): void;
  /**
   * Move the TSC on by `ticks` (as saveState(TSC), add, loadState(TSC) would; without it the
   * kernel does that). The kernel does so before every run of a vCPU that waited.
   */
  addTsc?(ticks: number): void;
}

/** Copy an exit qualification field by field (no Object.assign: it is on every exit's path). */
export function copyQual(from: VcpuState["qual"], to: VcpuState["qual"]): void {
  to.address = from.address;
  to.size = from.size;
  to.write = from.write;
  to.data = from.data;
  to.ebx = from.ebx;
  to.ecx = from.ecx;
  to.edx = from.edx;
  to.errorCode = from.errorCode;
  to.linear = from.linear;
  to.refused = from.refused;
  to.accessNs = from.accessNs;
  to.ramUnchanged = from.ramUnchanged;
}

/** Copy an injection record field by field. */
export function copyInjection(from: VcpuState["inj"], to: VcpuState["inj"]): void {
  to.valid = from.valid;
  to.vector = from.vector;
  to.type = from.type;
  to.errorCode = from.errorCode;
  to.requestWindow = from.requestWindow;
}

/** How the kernel obtains an engine for a new vCPU EC of a VM whose guest-physical memory is `memory`. */
export type VcpuEngineFactory = (memory: import("./guest-memory.js").GuestMemory) => VcpuEngine;
