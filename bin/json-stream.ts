// Splits a character stream into top-level JSON texts the way QEMU's JSON streamer does: by
// balanced braces and brackets, with strings and their escapes respected. Messages need no newline
// between them (python's qemu.qmp sends none), and a message may arrive in any number of pieces.

/** Longest message and deepest nesting we hold for a client (QEMU allows 1024 levels). */
export const MAX_MESSAGE_CHARS = 1 << 20;
export const MAX_DEPTH = 1024;

/** One top-level text to parse, or why the splitter gave up on one. */
export type JsonPiece = { text: string } | { error: string };

const WHITESPACE = new Set([" ", "\t", "\r", "\n"]);

export class JsonSplitter {
  private current = "";
  private depth = 0;
  private inString = false;
  private escaped = false;
  /** After a refused message: skip to the next newline, so that what follows is read afresh. */
  private skipping = false;

  push(chunk: string): JsonPiece[] {
    const out: JsonPiece[] = [];
    for (const ch of chunk) {
      if (this.skipping) {
        if (ch === "\n") this.skipping = false;
        continue;
      }
      if (this.inString) {
        this.current += ch;
        if (this.escaped) this.escaped = false;
        else if (ch === "\\") this.escaped = true;
        else if (ch === '"') {
          this.inString = false;
          if (this.depth === 0) this.flush(out);
        }
      } else if (WHITESPACE.has(ch)) {
        if (this.depth === 0) this.flush(out);
        else this.current += ch;
      } else if (ch === "{" || ch === "[") {
        if (this.depth === 0) this.flush(out);
        this.current += ch;
        if (++this.depth > MAX_DEPTH) this.refuse(out, `JSON parse error, nesting deeper than ${MAX_DEPTH}`);
      } else if (ch === "}" || ch === "]") {
        this.current += ch;
        if (this.depth > 0) this.depth--;
        if (this.depth === 0) this.flush(out);
      } else {
        if (ch === '"') {
          if (this.depth === 0) this.flush(out);
          this.inString = true;
        }
        this.current += ch;
      }
      if (this.current.length > MAX_MESSAGE_CHARS) this.refuse(out, `JSON parse error, a message longer than ${MAX_MESSAGE_CHARS} characters`);
    }
    return out;
  }

  private flush(out: JsonPiece[]): void {
    if (this.current.length > 0) out.push({ text: this.current });
    this.current = "";
  }

  private refuse(out: JsonPiece[], error: string): void {
    out.push({ error });
    this.current = "";
    this.depth = 0;
    this.inString = this.escaped = false;
    this.skipping = true;
  }
}
