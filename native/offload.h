#ifndef FZ_NATIVE_OFFLOAD_H
#define FZ_NATIVE_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

/* struct virtio_net_hdr (little-endian on the hosts we build for), in front of every TUN read and write with IFF_VNET_HDR. */
#define VNET_HDR_SIZE 10
#define VNET_F_NEEDS_CSUM 1
#define VNET_GSO_NONE 0
#define VNET_GSO_TCPV4 1
#define VNET_GSO_UDP 3
#define VNET_GSO_TCPV6 4
#define VNET_GSO_UDP_L4 5
#define VNET_GSO_ECN 0x80

/* A TUN read with offloads holds up to 64 KiB of packet. */
#define VNET_FRAME_MAX (VNET_HDR_SIZE + 65535)

#define OFFLOAD_OK 0
#define OFFLOAD_MALFORMED -1

/*
 * Splits one frame (virtio_net_hdr + packet) read from the TUN device into plain packets with
 * complete checksums: segments first..first+capacity-1 are written at out + n * stride with their
 * lengths in lengths[n]. `emitted` gets how many were written, `total` how many the frame holds
 * (call again with first = first + emitted while first < total). OFFLOAD_MALFORMED for a frame the
 * kernel would not produce (unknown GSO type, headers past the end, a segment over max_length).
 */
int offload_split(const uint8_t *frame, size_t frame_length, uint32_t first, uint8_t *out, size_t stride, size_t max_length,
                  uint32_t capacity, uint32_t *lengths, uint32_t *emitted, uint32_t *total);

/* Merging consecutive segments of one TCP (or, with `udp`, UDP) flow into one GSO frame for a write. */
#define COALESCE_MAX_SEGMENTS 64
#define COALESCE_MAX_BYTES 65535

typedef struct {
  uint8_t frame[VNET_FRAME_MAX];
  /* Merge UDP datagrams too (the device took TUN_F_USO4/6); set before the first start. */
  int udp;
  size_t length; /* packet bytes after the header */
  uint32_t count;
  uint8_t protocol;
  int version;
  size_t ip_length;
  size_t header; /* IP + TCP or UDP header bytes */
  uint32_t segment; /* payload bytes of every segment but the last */
  uint32_t next_sequence;
  uint16_t next_id;
  int closed;
} coalescer;

void coalescer_reset(coalescer *c);
/* Takes a packet as the first segment; 0 when it cannot be merged with anything (write it alone). */
int coalescer_start(coalescer *c, const uint8_t *packet, size_t length);
/* Appends the next segment of the same flow; 0 when it does not continue the merge. */
int coalescer_append(coalescer *c, const uint8_t *packet, size_t length);
/* Writes the virtio_net_hdr and fixes the headers; returns the frame length to write (count 1: a plain frame). */
size_t coalescer_finish(coalescer *c);

#endif
