// The protocol between the VMMs of two VMs that the fleet connected by a channel: each VMM serves
// one peer portal per channel (its portal id is the channel's index in the server's own list, so
// the server knows who calls), and the root task hands it to the other VMM only (ParentOp.PUBLISH,
// routed by the composition). Word 0 of a request is the operation; word 0 of a reply is 0 or an
// HvError code (the guest sees it negated).
//
//   request                                    reply
//   [BIND, port, callerPort]                   [status]        bind the server's unbound port `port`
//                                                              (allocated for the caller) to the caller's port
//   [SEND, port, callerPort]                   [status]        the caller signals its end: `port` becomes pending
//   [CLOSE, port, callerPort]                  [status]        the caller closed its end: `port` goes back to unbound
//   [READ, ref, offset, length]                [status, length, bytes...]   through grant `ref` of the server's table
//   [WRITE, ref, offset, length, bytes...]     [status]        the same, into the server's page (grant not read-only)
//   [MAP, ref, slot, writable]                 [status] + the page   grant `ref`'s page for the caller's map
//                                                              slot `slot`, delegated with the reply (read-only
//                                                              unless `writable`) into the caller's receive
//                                                              window; the server keeps the capability it
//                                                              derived it from, and revokes it when the grant
//                                                              ends or the server's VM does. Asked again for
//                                                              the same slot (the caller lost the page), it
//                                                              counts once.
//   [UNMAP, ref, slot, writable]               [status]        the caller dropped that mapping
//
// Bytes travel packed four to a word (packBytes); one message carries at most PEER_CHUNK bytes.

export const PeerOp = { BIND: 1, SEND: 2, CLOSE: 3, READ: 4, WRITE: 5, MAP: 6, UNMAP: 7 } as const;
/** Bytes one READ or WRITE message carries (well inside a UTCB's words). */
export const PEER_CHUNK = 2048;
/** Channels one VM may have. */
export const MAX_PEERS = 8;
