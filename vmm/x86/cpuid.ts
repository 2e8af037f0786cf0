// CPUID as a Pentium II-class processor (family 6, model 5), reporting only implemented features.

import type { Cpu } from "./cpu.js";

/** Feature bits of leaf 1 EDX that the core implements (FPU is added when an x87 unit is plugged in). */
export const FEATURES_EDX =
  (1 << 3) | // PSE
  (1 << 4) | // TSC
  (1 << 5) | // MSR
  (1 << 8) | // CX8
  (1 << 11) | // SEP
  (1 << 13) | // PGE
  (1 << 15); // CMOV

/** Reported only with an x87 unit plugged in: the FPU itself and FXSAVE/FXRSTOR. */
const FPU = 1 << 0, FXSR = 1 << 24;
/** Leaf 1 EDX bit 9: an on-chip local APIC, reported while IA32_APIC_BASE enables it (SDM vol. 3, 11.4.3). */
export const APIC = 1 << 9;
const APIC_GLOBAL_ENABLE = 0x800;

export const SIGNATURE = 0x652; // family 6, model 5, stepping 2

/** Leaf 1 ECX bit 31: a hypervisor is present (its leaves start at 0x40000000). */
export const HYPERVISOR_PRESENT = 1 << 31;

export function cpuid(c: Cpu): void {
  const leaf = c.r[0] >>> 0;
  const r = c.r;
  switch (leaf) {
    case 0:
      r[0] = 2;
      r[3] = 0x756e6547; // "Genu"
      r[2] = 0x49656e69; // "ineI"
      r[1] = 0x6c65746e; // "ntel"
      return;
    case 1:
      r[0] = SIGNATURE;
      r[3] = c.apicId << 24; // EBX: initial APIC ID in bits 31:24
      r[1] = c.hypervisorLeaves ? HYPERVISOR_PRESENT : 0;
      r[2] = FEATURES_EDX | (c.fpu !== null ? FPU | FXSR : 0) | (c.apicBase & APIC_GLOBAL_ENABLE ? APIC : 0);
      return;
    case 2:
      // One iteration; descriptors: 16K L1 I/D, 512K L2, TLBs (as a Pentium II reports them).
      r[0] = 0x03020101;
      r[3] = 0;
      r[1] = 0;
      r[2] = 0x0c040843;
      return;
    default:
      r[0] = r[1] = r[2] = r[3] = 0;
  }
}
