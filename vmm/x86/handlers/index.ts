// The handler registry: every handler name of the opcode table resolved to its function.

import type { Cpu, Handler } from "../cpu.js";
import type { HandlerResolver } from "../decoder.js";
import { OPCODES, RECORD_COUNT, type OpcodeEntry } from "../opcodes.js";
import { registerArith } from "./arith.js";
import { registerControl } from "./control.js";
import { registerData } from "./data.js";
import { registerString } from "./string.js";
import { registerSystem } from "./system.js";

function buildRegistry(): Record<string, Handler> {
  const h: Record<string, Handler> = {};
  registerArith(h);
  registerData(h);
  registerControl(h);
  registerString(h);
  registerSystem(h);
  return h;
}

/** All handlers by name (names as the opcode table spells them, with 16/32 suffixes). */
export const HANDLERS: Readonly<Record<string, Handler>> = buildRegistry();

/** Handler of an undefined opcode or bad LOCK: #UD. */
export const invalidOpcode: Handler = (c) => c.fault(6);
/** Handler of an instruction longer than 15 bytes: #GP(0). */
export const tooLong: Handler = (c) => c.fault(13, 0);

/** Table records whose handler names do not resolve (must be empty; checked by a test). */
export function unresolvedHandlers(): string[] {
  const missing: string[] = [];
  const visit = (e: OpcodeEntry) => {
    for (const o32 of [false, true]) {
      if (!lookup(e, o32)) missing.push(`${e.opcode.toString(16)} ${e.mnemonic} ${e.handler}${o32 ? "32" : "16"}`);
    }
  };
  for (const e of allEntries()) visit(e);
  return missing;
}

function allEntries(): OpcodeEntry[] {
  const out: OpcodeEntry[] = [];
  for (const e of OPCODES) {
    if (!e) continue;
    if (e.group) {
      for (const g of e.group) if (g) out.push(g);
    } else {
      out.push(e);
    }
  }
  return out;
}

function lookup(e: OpcodeEntry, o32: boolean): Handler | undefined {
  if (e.sized) return HANDLERS[e.handler + (o32 ? "32" : "16")] ?? HANDLERS[e.handler];
  return HANDLERS[e.handler];
}

/** Every handler a decoded slot can name, by id: #UD first (id 0, a slot never decoded), then #GP(0) for too long. */
const TABLE: Handler[] = [invalidOpcode, tooLong];

/** The id of `handler` in TABLE, added when it is not there yet (only while the module loads). */
function idOf(handler: Handler): number {
  const id = TABLE.indexOf(handler);
  return id >= 0 ? id : TABLE.push(handler) - 1;
}

/**
 * Handler ids of every table record for 16- and 32-bit operand size, resolved once: at
 * 2 * record.index + (32-bit ? 1 : 0), 0 (#UD) for a record with none (a group's own record).
 */
const RESOLVED = new Uint16Array(2 * RECORD_COUNT);
for (const e of allEntries()) {
  RESOLVED[2 * e.index] = idOf(lookup(e, false) ?? invalidOpcode);
  RESOLVED[2 * e.index + 1] = idOf(lookup(e, true) ?? invalidOpcode);
}

/** The resolver the decoder uses for the CPU; its table is complete once the module has loaded. */
export const CPU_HANDLERS: HandlerResolver<Cpu> = {
  table: TABLE,
  resolve(e, o32) {
    return RESOLVED[2 * e.index + (o32 ? 1 : 0)];
  },
  invalid: 0,
  tooLong: 1,
};
