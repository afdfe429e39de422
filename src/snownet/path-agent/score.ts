// Ranking of candidate pairs for the primary path; smaller is better. A pair's bucket compares,
// in this order:
//   1. its worse end's kind, then its better end's kind (host < srflx < relay), so one relay hop
//      (relay -> srflx) ranks ahead of two (relay -> relay);
//   2. our end relayed ahead of only the peer's end relayed;
//   3. our relay candidate of the family of the socket that reaches the relay ahead of a crossed one;
//   4. an IPv6 local end ahead of an IPv4 one.
// Within a bucket, pairs compare by smoothed RTT; an unmeasured pair comes last.
import { KIND_RANK, type PathCandidateKind } from './candidate.ts';

/** Packs the four criteria into one small integer (at most 71); fields as numbered above. */
export function pairBucket(
  localKind: PathCandidateKind,
  remoteKind: PathCandidateKind,
  localFamilyMatched: boolean,
  localFamily: 4 | 6,
): number {
  const local = KIND_RANK[localKind];
  const remote = KIND_RANK[remoteKind];
  const tier = Math.max(local, remote) * 3 + Math.min(local, remote);
  const relayEnd = localKind === 'relay' ? 0 : 1;
  const familyMatch = localFamilyMatched ? 0 : 1;
  const ipv6First = localFamily === 6 ? 0 : 1;
  return ((tier * 2 + relayEnd) * 2 + familyMatch) * 2 + ipv6First;
}
