// Model-specific registers of the core: TSC, platform ID, APIC base, BIOS update signature,
// SYSENTER_CS/ESP/EIP.

import type { Cpu } from "./cpu.js";

export const MSR_TSC = 0x10, MSR_PLATFORM_ID = 0x17, MSR_APIC_BASE = 0x1b, MSR_BIOS_SIGN = 0x8b;
export const MSR_SYSENTER_CS = 0x174, MSR_SYSENTER_ESP = 0x175, MSR_SYSENTER_EIP = 0x176;

/** RDMSR: EDX:EAX = MSR[index]; false when the MSR does not exist (#GP). */
export function readMsr(c: Cpu, index: number): boolean {
  let lo = 0, hi = 0;
  switch (index) {
    case MSR_TSC: {
      const t = c.retired + c.tscOffset;
      lo = t % 4294967296;
      hi = Math.floor(t / 4294967296);
      break;
    }
    case MSR_PLATFORM_ID: // read-only; platform ID 0 in bits 52:50 (microcode loaders read it)
      break;
    case MSR_APIC_BASE:
      if (c.apicBase === 0) return false; // no local APIC, no MSR
      lo = c.apicBase;
      break;
    case MSR_BIOS_SIGN:
      break;
    case MSR_SYSENTER_CS:
      lo = c.sysenterCs;
      break;
    case MSR_SYSENTER_ESP:
      lo = c.sysenterEsp;
      break;
    case MSR_SYSENTER_EIP:
      lo = c.sysenterEip;
      break;
    default:
      return false;
  }
  c.r[0] = lo;
  c.r[2] = hi;
  return true;
}

/** WRMSR: false when the MSR does not exist or the value is invalid (#GP). */
export function writeMsr(c: Cpu, index: number, lo: number, hi: number): boolean {
  switch (index) {
    case MSR_TSC:
      c.tscOffset = (hi >>> 0) * 4294967296 + (lo >>> 0) - c.retired;
      return true;
    case MSR_APIC_BASE:
      if (hi !== 0 || c.apicBase === 0) return false;
      c.apicBase = (lo & 0xfffff900) | 0;
      return true;
    case MSR_BIOS_SIGN:
      return true;
    case MSR_SYSENTER_CS:
      c.sysenterCs = lo & 0xffff;
      return true;
    case MSR_SYSENTER_ESP:
      c.sysenterEsp = lo;
      return true;
    case MSR_SYSENTER_EIP:
      c.sysenterEip = lo;
      return true;
    default:
      return false;
  }
}
