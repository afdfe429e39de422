/** Largest IP packet the gateway handles: the TUN MTU. Larger packets are refused by the parser. */
export const MAX_IP_SIZE = 1280;
export const IPV4_MIN_HEADER_LENGTH = 20;
export const IPV4_MAX_HEADER_LENGTH = 60;
export const IPV6_HEADER_LENGTH = 40;
export const UDP_HEADER_LENGTH = 8;
export const TCP_MIN_HEADER_LENGTH = 20;
export const ICMP_HEADER_LENGTH = 8;

export const PROTOCOL_ICMPV4 = 1;
export const PROTOCOL_TCP = 6;
export const PROTOCOL_UDP = 17;
export const PROTOCOL_ICMPV6 = 58;
export const PROTOCOL_IPV6_HOP_BY_HOP = 0;
export const PROTOCOL_IPV6_ROUTING = 43;
export const PROTOCOL_IPV6_FRAGMENT = 44;
export const PROTOCOL_AUTHENTICATION = 51;
export const PROTOCOL_IPV6_DESTINATION_OPTIONS = 60;
/** Reserved IP protocol number used by Firezone's p2p control packets. */
export const PROTOCOL_FZ_P2P_CONTROL = 0xff;

// IPv4 header offsets
export const IPV4_OFFSET_TOS = 1;
export const IPV4_OFFSET_TOTAL_LENGTH = 2;
export const IPV4_OFFSET_IDENTIFICATION = 4;
export const IPV4_OFFSET_FLAGS = 6;
export const IPV4_OFFSET_TTL = 8;
export const IPV4_OFFSET_PROTOCOL = 9;
export const IPV4_OFFSET_CHECKSUM = 10;
export const IPV4_OFFSET_SOURCE = 12;
export const IPV4_OFFSET_DESTINATION = 16;
export const IPV4_FLAG_DONT_FRAGMENT = 0x40;

// IPv6 header offsets
export const IPV6_OFFSET_PAYLOAD_LENGTH = 4;
export const IPV6_OFFSET_NEXT_HEADER = 6;
export const IPV6_OFFSET_HOP_LIMIT = 7;
export const IPV6_OFFSET_SOURCE = 8;
export const IPV6_OFFSET_DESTINATION = 24;

// Transport offsets, relative to the start of the transport header
export const L4_OFFSET_SOURCE_PORT = 0;
export const L4_OFFSET_DESTINATION_PORT = 2;
export const UDP_OFFSET_LENGTH = 4;
export const UDP_OFFSET_CHECKSUM = 6;
export const TCP_OFFSET_SEQUENCE = 4;
export const TCP_OFFSET_ACKNOWLEDGEMENT = 8;
export const TCP_OFFSET_DATA_OFFSET = 12;
export const TCP_OFFSET_FLAGS = 13;
export const TCP_OFFSET_WINDOW = 14;
export const TCP_OFFSET_CHECKSUM = 16;
export const ICMP_OFFSET_TYPE = 0;
export const ICMP_OFFSET_CODE = 1;
export const ICMP_OFFSET_CHECKSUM = 2;
export const ICMP_OFFSET_IDENTIFIER = 4;
export const ICMP_OFFSET_SEQUENCE = 6;

export const TCP_FLAG_FIN = 0x01;
export const TCP_FLAG_SYN = 0x02;
export const TCP_FLAG_RST = 0x04;
export const TCP_FLAG_PSH = 0x08;
export const TCP_FLAG_ACK = 0x10;

export const ICMPV4_ECHO_REPLY = 0;
export const ICMPV4_DESTINATION_UNREACHABLE = 3;
export const ICMPV4_ECHO_REQUEST = 8;
export const ICMPV4_TIME_EXCEEDED = 11;
export const ICMPV4_TIMESTAMP = 13;
export const ICMPV4_TIMESTAMP_REPLY = 14;
export const ICMPV4_TIMESTAMP_LENGTH = 20;
export const ICMPV4_CODE_NETWORK_UNREACHABLE = 0;
export const ICMPV4_CODE_FILTER_PROHIBITED = 13;

export const ICMPV6_DESTINATION_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_CODE_ADMINISTRATIVELY_PROHIBITED = 1;
export const ICMPV6_CODE_ADDRESS_UNREACHABLE = 3;

/** TTL / hop limit of ICMP errors the gateway generates. */
export const ICMP_ERROR_TTL = 20;
/** TTL / hop limit of the `make*Packet` builders (etherparse's default in the reference). */
export const DEFAULT_TTL = 64;
/** Largest original-packet excerpt in a generated ICMPv6 error: 1280 - 40 - 8. */
export const ICMPV6_ERROR_MAX_PAYLOAD = MAX_IP_SIZE - IPV6_HEADER_LENGTH - ICMP_HEADER_LENGTH;

/** The two ECN bits of the IPv4 TOS byte / IPv6 traffic class (RFC 3168). */
export const ECN_NOT_ECT = 0b00;
export const ECN_ECT1 = 0b01;
export const ECN_ECT0 = 0b10;
export const ECN_CE = 0b11;
export type Ecn = 0 | 1 | 2 | 3;
