// Status codes of hypercalls. Caller mistakes are answered with one of these, never with a throw.

export enum Status {
  SUCCESS = 0,
  /** A blocking operation timed out (or a zero-timeout operation would have blocked). */
  TIMEOUT = 1,
  /**
   * The operation was cut short: the peer died or was revoked, the call would deadlock, or it would
   * nest deeper than MAX_CALL_DEPTH calls or the stack allows.
   */
  ABORTED = 2,
  BAD_HYPERCALL = 3,
  /** The selector names no capability, one of the wrong type, or one without the needed rights. */
  BAD_CAPABILITY = 4,
  BAD_PARAMETER = 5,
  /** The operation is not available in this context (e.g. deferring a reply the caller cannot wait for). */
  BAD_FEATURE = 6,
  /** The PD that asked has not enough kernel memory quota left. */
  OUT_OF_QUOTA = 7,
}

export function statusName(s: Status): string {
  return Status[s] ?? `UNKNOWN(${s})`;
}
