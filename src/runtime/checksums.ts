import { IpPacket } from '../ip/index.ts';
import { createLogger } from '../log/index.ts';

const log = createLogger('firezone_gateway::checksums');
const view = new IpPacket();

/**
 * `--validate-checksums`: checks the IPv4 header, TCP and UDP checksums of a packet about to be
 * written to the TUN device and warns on a mismatch; the packet is written anyway, as the
 * reference does. Returns whether the checksums were valid.
 */
export function validatePacketChecksums(packet: Uint8Array): boolean {
  if (view.parse(packet) !== undefined) return true;
  if (view.checksumsValid()) return true;
  log.warn('IPv4/UDP/TCP checksum invalid', { protocol: view.transport, length: packet.length });
  return false;
}
