// Parser of the SingleStepTests MOO format (v1.x): chunked little-endian binary, see the README
// of the 80286 subset in shared/conformance/singlestep-80286.

/** Register order of REGS bitmasks. */
export const MOO_REGS = ["ax", "bx", "cx", "dx", "cs", "ss", "ds", "es", "sp", "bp", "si", "di", "ip", "flags"] as const;
export type MooReg = (typeof MOO_REGS)[number];

export interface MooState {
  regs: Partial<Record<MooReg, number>>;
  /** Register AND-masks for undefined bits (FINA only). */
  masks: Partial<Record<MooReg, number>>;
  ram: Array<[number, number]>;
}

export interface MooTest {
  index: number;
  name: string;
  bytes: Uint8Array;
  init: MooState;
  final: MooState;
  exception?: { vector: number; flagsAddress: number };
}

export interface MooFile {
  cpu: string;
  opcode: number;
  mnemonic: string;
  /** Group extension (ModRM reg) or -1. */
  group: number;
  tests: MooTest[];
}

export class MooFormatError extends Error {
  constructor(message: string) {
    super(`MOO: ${message}`);
    this.name = "MooFormatError";
  }
}

function* chunks(buf: Uint8Array, start: number, end: number): Generator<[string, number, number]> {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let p = start;
  while (p + 8 <= end) {
    const id = String.fromCharCode(buf[p], buf[p + 1], buf[p + 2], buf[p + 3]);
    const len = view.getUint32(p + 4, true);
    const body = p + 8;
    if (body + len > end) throw new MooFormatError(`chunk ${id} at ${p} runs past its container`);
    yield [id, body, body + len];
    p = body + len;
  }
}

function parseState(buf: Uint8Array, start: number, end: number): MooState {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const state: MooState = { regs: {}, masks: {}, ram: [] };
  for (const [id, s, e] of chunks(buf, start, end)) {
    if (id === "REGS" || id === "RMSK") {
      const mask = view.getUint16(s, true);
      let p = s + 2;
      const into = id === "REGS" ? state.regs : state.masks;
      for (let b = 0; b < MOO_REGS.length; b++) {
        if (mask & (1 << b)) {
          if (p + 2 > e) throw new MooFormatError(`${id} too short`);
          into[MOO_REGS[b]] = view.getUint16(p, true);
          p += 2;
        }
      }
    } else if (id === "RAM ") {
      const n = view.getUint32(s, true);
      if (s + 4 + n * 5 > e) throw new MooFormatError("RAM chunk too short");
      for (let k = 0; k < n; k++) state.ram.push([view.getUint32(s + 4 + k * 5, true), buf[s + 8 + k * 5]]);
    }
  }
  return state;
}

export function parseMoo(buf: Uint8Array): MooFile {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const file: MooFile = { cpu: "", opcode: 0, mnemonic: "", group: -1, tests: [] };
  let sawHeader = false;
  for (const [id, s, e] of chunks(buf, 0, buf.length)) {
    if (id === "MOO ") {
      sawHeader = true;
      file.cpu = String.fromCharCode(...buf.subarray(s + 8, s + 12));
    } else if (id === "META") {
      file.opcode = view.getUint32(s + 3, true);
      file.mnemonic = String.fromCharCode(...buf.subarray(s + 7, s + 15)).trim();
      const g = buf[s + 28];
      file.group = g === 0xff ? -1 : g;
    } else if (id === "TEST") {
      const t: MooTest = {
        index: view.getUint32(s, true), name: "", bytes: new Uint8Array(0),
        init: { regs: {}, masks: {}, ram: [] }, final: { regs: {}, masks: {}, ram: [] },
      };
      for (const [sid, ss, se] of chunks(buf, s + 4, e)) {
        if (sid === "NAME") t.name = String.fromCharCode(...buf.subarray(ss + 4, ss + 4 + view.getUint32(ss, true)));
        else if (sid === "BYTS") t.bytes = buf.slice(ss + 4, ss + 4 + view.getUint32(ss, true));
        else if (sid === "INIT") t.init = parseState(buf, ss, se);
        else if (sid === "FINA") t.final = parseState(buf, ss, se);
        else if (sid === "EXCP") t.exception = { vector: buf[ss], flagsAddress: view.getUint32(ss + 1, true) };
      }
      file.tests.push(t);
    }
  }
  if (!sawHeader) throw new MooFormatError("missing MOO header chunk");
  return file;
}
