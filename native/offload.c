#define _GNU_SOURCE
#include "offload.h"

#include <string.h>

/*
 * TUN offloads (IFF_VNET_HDR): every read and write carries a virtio_net_hdr in front of the
 * packet. Reads may be TCP (TSO) or UDP (USO) packets of up to 64 KiB that the kernel has not
 * segmented yet, or packets whose L4 checksum is left to us (NEEDS_CSUM); `offload_split` turns
 * them into the MTU-sized packets with complete checksums the policy core judges one by one.
 * Writes of consecutive TCP segments of one flow are merged back into one such packet
 * (`coalescer_*`), so the kernel forwards it once and segments it as late as it can.
 *
 * Everything here is pure byte work on caller buffers (no syscalls), so it is tested through
 * N-API entry points with property tests (split(coalesce(segments)) == segments).
 */

#define PROTOCOL_TCP 6
#define PROTOCOL_UDP 17
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_URG 0x20
#define TCP_ECE 0x40
#define TCP_CWR 0x80

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* One's-complement sum of big-endian 16-bit words (a trailing odd byte is padded with zero). */
static uint64_t sum_words(const uint8_t *p, size_t length, uint64_t acc) {
  size_t i = 0;
  for (; i + 1 < length; i += 2) acc += (uint32_t)((p[i] << 8) | p[i + 1]);
  if (i < length) acc += (uint32_t)(p[i] << 8);
  return acc;
}

static uint16_t fold(uint64_t acc) {
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return (uint16_t)acc;
}

/* The pseudo-header sum of an IPv4 or IPv6 packet for an L4 length (not complemented). */
static uint64_t pseudo_header(const uint8_t *ip, int version, uint8_t protocol, uint32_t l4_length) {
  uint64_t acc = protocol;
  acc += l4_length;
  if (version == 4) return sum_words(ip + 12, 8, acc);
  return sum_words(ip + 8, 32, acc);
}

static void ipv4_header_checksum(uint8_t *ip, size_t header_length) {
  put16(ip + 10, 0);
  put16(ip + 10, (uint16_t)~fold(sum_words(ip, header_length, 0)));
}

/* Writes the complete L4 checksum of a segment: TCP or UDP header at `l4`, `l4_length` bytes. */
static void l4_checksum(uint8_t *ip, int version, uint8_t protocol, uint8_t *l4, uint32_t l4_length) {
  size_t at = protocol == PROTOCOL_TCP ? 16 : 6;
  put16(l4 + at, 0);
  uint16_t checksum = (uint16_t)~fold(sum_words(l4, l4_length, pseudo_header(ip, version, protocol, l4_length)));
  if (protocol == PROTOCOL_UDP && checksum == 0) checksum = 0xffff;
  put16(l4 + at, checksum);
}

/* IP version and header length of a packet whose L4 protocol must be `protocol`; 0 when not so. */
static size_t ip_header(const uint8_t *packet, size_t length, uint8_t protocol, int *version) {
  if (length < 20) return 0;
  *version = packet[0] >> 4;
  if (*version == 4) {
    size_t header = (size_t)(packet[0] & 0x0f) * 4;
    if (header < 20 || header > length || packet[9] != protocol) return 0;
    return header;
  }
  if (*version == 6) {
    if (length < 40 || packet[6] != protocol) return 0;
    return 40;
  }
  return 0;
}

int offload_split(const uint8_t *frame, size_t frame_length, uint32_t first, uint8_t *out, size_t stride, size_t max_length,
                  uint32_t capacity, uint32_t *lengths, uint32_t *emitted, uint32_t *total) {
  *emitted = 0;
  *total = 0;
  if (frame_length < VNET_HDR_SIZE) return OFFLOAD_MALFORMED;
  const uint8_t *hdr = frame;
  const uint8_t *packet = frame + VNET_HDR_SIZE;
  size_t length = frame_length - VNET_HDR_SIZE;
  uint8_t flags = hdr[0];
  uint8_t gso_type = hdr[1] & (uint8_t)~VNET_GSO_ECN;
  uint16_t gso_size = (uint16_t)(hdr[4] | (hdr[5] << 8));
  uint16_t csum_start = (uint16_t)(hdr[6] | (hdr[7] << 8));
  uint16_t csum_offset = (uint16_t)(hdr[8] | (hdr[9] << 8));

  if (gso_type == VNET_GSO_NONE) {
    *total = 1;
    if (first > 0) return OFFLOAD_OK;
    if (capacity == 0) return OFFLOAD_OK;
    if (length > max_length) return OFFLOAD_MALFORMED;
    memcpy(out, packet, length);
    if (flags & VNET_F_NEEDS_CSUM) {
      if ((size_t)csum_start + csum_offset + 2 > length) return OFFLOAD_MALFORMED;
      uint8_t *field = out + csum_start + csum_offset;
      uint16_t initial = get16(field);
      put16(field, 0);
      put16(field, (uint16_t)~fold(sum_words(out + csum_start, length - csum_start, initial)));
    }
    lengths[0] = (uint32_t)length;
    *emitted = 1;
    return OFFLOAD_OK;
  }

  uint8_t protocol;
  if (gso_type == VNET_GSO_TCPV4 || gso_type == VNET_GSO_TCPV6) protocol = PROTOCOL_TCP;
  else if (gso_type == VNET_GSO_UDP_L4) protocol = PROTOCOL_UDP;
  else return OFFLOAD_MALFORMED;
  int version;
  size_t ip_length = ip_header(packet, length, protocol, &version);
  if (ip_length == 0 || (gso_type == VNET_GSO_TCPV4 && version != 4) || (gso_type == VNET_GSO_TCPV6 && version != 6)) {
    return OFFLOAD_MALFORMED;
  }
  size_t l4_header;
  if (protocol == PROTOCOL_TCP) {
    if (ip_length + 20 > length) return OFFLOAD_MALFORMED;
    l4_header = (size_t)(packet[ip_length + 12] >> 4) * 4;
    if (l4_header < 20) return OFFLOAD_MALFORMED;
  } else {
    l4_header = 8;
  }
  size_t header = ip_length + l4_header;
  if (header > length || gso_size == 0 || header + gso_size > max_length) return OFFLOAD_MALFORMED;
  size_t payload = length - header;
  uint32_t segments = payload == 0 ? 1 : (uint32_t)((payload + gso_size - 1) / gso_size);
  *total = segments;
  uint16_t id = version == 4 ? get16(packet + 4) : 0;
  uint32_t sequence = protocol == PROTOCOL_TCP ? get32(packet + ip_length + 4) : 0;
  uint8_t tcp_flags = protocol == PROTOCOL_TCP ? packet[ip_length + 13] : 0;

  uint32_t n = 0;
  for (uint32_t i = first; i < segments && n < capacity; i++, n++) {
    size_t start = header + (size_t)i * gso_size;
    size_t chunk = payload == 0 ? 0 : (length - start < gso_size ? length - start : gso_size);
    uint8_t *segment = out + (size_t)n * stride;
    memcpy(segment, packet, header);
    memcpy(segment + header, packet + start, chunk);
    uint32_t segment_length = (uint32_t)(header + chunk);
    uint8_t *l4 = segment + ip_length;
    if (version == 4) {
      put16(segment + 2, (uint16_t)segment_length);
      put16(segment + 4, (uint16_t)(id + i));
      ipv4_header_checksum(segment, ip_length);
    } else {
      put16(segment + 4, (uint16_t)(segment_length - 40));
    }
    if (protocol == PROTOCOL_TCP) {
      put32(l4 + 4, sequence + i * (uint32_t)gso_size);
      uint8_t f = tcp_flags;
      if (i + 1 < segments) f &= (uint8_t)~(TCP_FIN | TCP_PSH);
      if (i > 0) f &= (uint8_t)~TCP_CWR;
      l4[13] = f;
    } else {
      put16(l4 + 4, (uint16_t)(l4_header + chunk));
    }
    l4_checksum(segment, version, protocol, l4, (uint32_t)(l4_header + chunk));
    lengths[n] = segment_length;
  }
  *emitted = n;
  return OFFLOAD_OK;
}

/* --- coalescing segments of one flow for one GSO write --- */

/*
 * Whether a packet can take part in a merge, and its layout: TCP carrying data with no flag but
 * ACK and PSH, or (with `udp`) UDP with a consistent length field; over IPv4 without options or
 * fragmentation, or IPv6 without extension headers; the IP length field matching the buffer.
 */
static int mergeable(const uint8_t *packet, size_t length, int udp, uint8_t *protocol, int *version, size_t *ip_length, size_t *header) {
  if (length < 20) return 0;
  uint8_t proto = (packet[0] >> 4) == 4 ? packet[9] : (packet[0] >> 4) == 6 && length >= 40 ? packet[6] : 0;
  if (proto != PROTOCOL_TCP && !(udp && proto == PROTOCOL_UDP)) return 0;
  size_t ip = ip_header(packet, length, proto, version);
  if (ip == 0) return 0;
  if (*version == 4) {
    if (ip != 20 || (get16(packet + 6) & 0x3fff) != 0 || get16(packet + 2) != length) return 0;
  } else if ((size_t)get16(packet + 4) + 40 != length) {
    return 0;
  }
  if (proto == PROTOCOL_UDP) {
    if (ip + 8 >= length || get16(packet + ip + 4) != length - ip) return 0;
    *header = ip + 8;
  } else {
    if (ip + 20 > length) return 0;
    size_t tcp = (size_t)(packet[ip + 12] >> 4) * 4;
    if (tcp < 20 || ip + tcp >= length) return 0;
    if (packet[ip + 13] & (TCP_FIN | TCP_SYN | TCP_RST | TCP_URG | TCP_ECE | TCP_CWR)) return 0;
    *header = ip + tcp;
  }
  *protocol = proto;
  *ip_length = ip;
  return 1;
}

void coalescer_reset(coalescer *c) { c->count = 0; }

int coalescer_start(coalescer *c, const uint8_t *packet, size_t length) {
  int version;
  uint8_t protocol;
  size_t ip_length, header;
  c->count = 0;
  if (!mergeable(packet, length, c->udp, &protocol, &version, &ip_length, &header)) return 0;
  memcpy(c->frame + VNET_HDR_SIZE, packet, length);
  c->length = length;
  c->count = 1;
  c->protocol = protocol;
  c->version = version;
  c->ip_length = ip_length;
  c->header = header;
  c->segment = (uint32_t)(length - header);
  c->next_sequence = protocol == PROTOCOL_TCP ? get32(packet + ip_length + 4) + c->segment : 0;
  c->next_id = version == 4 ? (uint16_t)(get16(packet + 4) + 1) : 0;
  c->closed = protocol == PROTOCOL_TCP && (packet[ip_length + 13] & TCP_PSH) != 0;
  return 1;
}

int coalescer_append(coalescer *c, const uint8_t *packet, size_t length) {
  if (c->count == 0 || c->closed || c->count >= COALESCE_MAX_SEGMENTS) return 0;
  int version;
  uint8_t protocol;
  size_t ip_length, header;
  if (!mergeable(packet, length, c->udp, &protocol, &version, &ip_length, &header)) return 0;
  const uint8_t *head = c->frame + VNET_HDR_SIZE;
  size_t payload = length - header;
  if (protocol != c->protocol || version != c->version || header != c->header || payload > c->segment ||
      c->length + payload > COALESCE_MAX_BYTES) {
    return 0;
  }
  if (version == 4) {
    /* Same TOS, flags (DF), TTL, protocol, addresses; IP ids in sequence unless DF is set. */
    if (packet[1] != head[1] || packet[6] != head[6] || packet[8] != head[8] || memcmp(packet + 12, head + 12, 8) != 0) return 0;
    if (!(packet[6] & 0x40) && get16(packet + 4) != c->next_id) return 0;
  } else {
    /* Same version, traffic class, flow label, hop limit and addresses. */
    if (memcmp(packet, head, 4) != 0 || packet[7] != head[7] || memcmp(packet + 8, head + 8, 32) != 0) return 0;
  }
  const uint8_t *l4 = packet + ip_length;
  const uint8_t *first = head + c->ip_length;
  if (memcmp(l4, first, 4) != 0) return 0; /* the same ports */
  if (protocol == PROTOCOL_TCP) {
    /* The next sequence number, the same ack, offset, window and options; PSH only last. */
    if (get32(l4 + 4) != c->next_sequence || memcmp(l4 + 8, first + 8, 5) != 0 || memcmp(l4 + 14, first + 14, 2) != 0 ||
        memcmp(l4 + 20, first + 20, header - ip_length - 20) != 0 ||
        (l4[13] & (uint8_t)~TCP_PSH) != (first[13] & (uint8_t)~TCP_PSH)) {
      return 0;
    }
  }
  memcpy(c->frame + VNET_HDR_SIZE + c->length, packet + header, payload);
  c->length += payload;
  c->count++;
  c->next_sequence += (uint32_t)payload;
  c->next_id++;
  int push = protocol == PROTOCOL_TCP && (l4[13] & TCP_PSH);
  if (payload < c->segment || push) {
    c->closed = 1;
    if (push) c->frame[VNET_HDR_SIZE + c->ip_length + 13] |= TCP_PSH;
  }
  return 1;
}

size_t coalescer_finish(coalescer *c) {
  uint8_t *hdr = c->frame;
  uint8_t *packet = c->frame + VNET_HDR_SIZE;
  memset(hdr, 0, VNET_HDR_SIZE);
  if (c->count <= 1) return VNET_HDR_SIZE + c->length;
  if (c->version == 4) {
    put16(packet + 2, (uint16_t)c->length);
    ipv4_header_checksum(packet, c->ip_length);
  } else {
    put16(packet + 4, (uint16_t)(c->length - 40));
  }
  /* The kernel completes the checksum per segment: the field holds the pseudo-header sum of the
   * whole (for UDP with the whole length in the length field, which it also rewrites per segment). */
  uint8_t *l4 = packet + c->ip_length;
  uint32_t l4_length = (uint32_t)(c->length - c->ip_length);
  uint16_t csum_offset = c->protocol == PROTOCOL_TCP ? 16 : 6;
  if (c->protocol == PROTOCOL_UDP) put16(l4 + 4, (uint16_t)l4_length);
  put16(l4 + csum_offset, fold(pseudo_header(packet, c->version, c->protocol, l4_length)));
  hdr[0] = VNET_F_NEEDS_CSUM;
  hdr[1] = c->protocol == PROTOCOL_UDP ? VNET_GSO_UDP_L4 : c->version == 4 ? VNET_GSO_TCPV4 : VNET_GSO_TCPV6;
  uint16_t header = (uint16_t)c->header;
  uint16_t segment = (uint16_t)c->segment;
  uint16_t csum_start = (uint16_t)c->ip_length;
  memcpy(hdr + 2, &header, 2);
  memcpy(hdr + 4, &segment, 2);
  memcpy(hdr + 6, &csum_start, 2);
  memcpy(hdr + 8, &csum_offset, 2);
  return VNET_HDR_SIZE + c->length;
}
