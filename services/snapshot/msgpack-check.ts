// Decoding untrusted msgpack: a structural pass over the bytes first, then the library decoder.
//
// The pass refuses what the decoder would spend memory or stack on before noticing the input is
// bad: counts larger than the bytes left (an array header claiming 4 billion elements), nesting
// deeper than MAX_DEPTH (a megabyte of 0x91 is a million nested arrays, each a decoder stack
// frame), extension types (timestamps, unknown ext: snapshot records are plain data), map keys
// that are not strings, and bytes after the one top-level value. What passes decodes to null,
// booleans, numbers, strings, Uint8Arrays, arrays and plain objects, nothing else.
import { decode } from "@msgpack/msgpack";
import { describeThrown, refuse } from "./errors.js";

/** Deepest nesting of arrays and maps in any section (the top-level value is depth 1). */
export const MAX_DEPTH = 32;

/** Payload lengths of the variable-length types, by tag: [bytes of the length field, kind]. */
function lengthField(tag: number): [number, "str" | "bin" | "array" | "map"] | null {
  switch (tag) {
    case 0xc4: return [1, "bin"];
    case 0xc5: return [2, "bin"];
    case 0xc6: return [4, "bin"];
    case 0xd9: return [1, "str"];
    case 0xda: return [2, "str"];
    case 0xdb: return [4, "str"];
    case 0xdc: return [2, "array"];
    case 0xdd: return [4, "array"];
    case 0xde: return [2, "map"];
    case 0xdf: return [4, "map"];
    default: return null;
  }
}

/** Bytes after the tag of the fixed-size scalar types (floats, ints); null when not one. */
function fixedSize(tag: number): number | null {
  switch (tag) {
    case 0xca: return 4;
    case 0xcb: return 8;
    case 0xcc: case 0xd0: return 1;
    case 0xcd: case 0xd1: return 2;
    case 0xce: case 0xd2: return 4;
    case 0xcf: case 0xd3: return 8;
    default: return null;
  }
}

function readUint(bytes: Uint8Array, pos: number, size: number): number {
  let v = 0;
  for (let i = 0; i < size; i++) v = v * 256 + bytes[pos + i]!;
  return v;
}

/** Checks that `bytes` hold exactly one msgpack value of the plain kinds, within the limits above. */
export function checkMsgpack(bytes: Uint8Array, section: string): void {
  const at = (pos: number) => `msgpack at byte ${pos}`;
  const remaining: number[] = [1]; // items still expected per open container
  const isMap: boolean[] = [false];
  let pos = 0;
  while (remaining.length > 0) {
    const top = remaining.length - 1;
    if (remaining[top] === 0) {
      remaining.pop();
      isMap.pop();
      continue;
    }
    const isKey = isMap[top]! && remaining[top]! % 2 === 0;
    remaining[top]!--;
    if (pos >= bytes.length) refuse(section, at(pos), "the data ends inside a value");
    const tag = bytes[pos]!;
    let kind: "scalar" | "str" | "bin" | "array" | "map" = "scalar";
    let count = 0;
    let headerBytes = 1;
    if (tag <= 0x7f || tag >= 0xe0 || tag === 0xc0 || tag === 0xc2 || tag === 0xc3) kind = "scalar";
    else if (tag <= 0x8f) [kind, count] = ["map", tag & 0x0f];
    else if (tag <= 0x9f) [kind, count] = ["array", tag & 0x0f];
    else if (tag <= 0xbf) [kind, count] = ["str", tag & 0x1f];
    else {
      const fixed = fixedSize(tag);
      const variable = lengthField(tag);
      if (fixed !== null) headerBytes = 1 + fixed;
      else if (variable !== null) {
        if (pos + 1 + variable[0] > bytes.length) refuse(section, at(pos), "the data ends inside a length field");
        kind = variable[1];
        count = readUint(bytes, pos + 1, variable[0]);
        headerBytes = 1 + variable[0];
      } else if (tag === 0xc1) refuse(section, at(pos), "0xc1 is not a msgpack type");
      else refuse(section, at(pos), `extension type 0x${tag.toString(16)} is not allowed (records are plain data)`);
    }
    if (isKey && kind !== "str") refuse(section, at(pos), "a map key is not a string");
    pos += headerBytes;
    if (pos > bytes.length) refuse(section, at(pos - headerBytes), "the data ends inside a number");
    const left = bytes.length - pos;
    if (kind === "str" || kind === "bin") {
      if (count > left) refuse(section, at(pos - headerBytes), `a ${kind} of ${count} bytes with only ${left} bytes left`);
      pos += count;
    } else if (kind === "array" || kind === "map") {
      const items = kind === "map" ? count * 2 : count;
      if (items > left) refuse(section, at(pos - headerBytes), `an ${kind} of ${count} entries with only ${left} bytes left`);
      if (remaining.length >= MAX_DEPTH) refuse(section, at(pos - headerBytes), `nested deeper than ${MAX_DEPTH} levels`);
      remaining.push(items);
      isMap.push(kind === "map");
    }
  }
  if (pos !== bytes.length) refuse(section, at(pos), `${bytes.length - pos} bytes follow the value`);
}

/** Checks and decodes one section's msgpack; any failure is a SnapshotError naming the section. */
export function decodeMsgpack(bytes: Uint8Array, section: string): unknown {
  checkMsgpack(bytes, section);
  const n = bytes.length;
  // A plain Uint8Array view, so that bin values come out as Uint8Array even when `bytes` is a Buffer.
  const plain = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
  try {
    return decode(plain, { maxStrLength: n, maxBinLength: n, maxArrayLength: n, maxMapLength: n, maxExtLength: 0 });
  } catch (err) {
    return refuse(section, "msgpack", describeThrown(err));
  }
}
