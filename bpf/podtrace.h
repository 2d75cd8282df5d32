/* SPDX-License-Identifier: GPL-2.0 */
/*
 * podtrace.h - the one definition of everything the kernel half and the
 * runner exchange: event and map layouts, kinds and limits.
 *
 * Rust never mirrors these by hand: libbpf-cargo emits them into the
 * skeleton's `types` module (see the dummy instances in podtrace.bpf.c).
 * Fields are fixed width, largest first, so the layout has no holes that
 * differ between C and Rust.
 */
#ifndef __PODTRACE_H
#define __PODTRACE_H

/* Task command length, as the kernel's TASK_COMM_LEN. */
#define PT_COMM_LEN 16
/* Pod IPs one runner traces: a node rarely runs more pods than this. */
#define PT_MAX_PODS 256
/* Peer IPs (--peer-ip) one runner filters on. */
#define PT_MAX_PEERS 256
/* Ports (--port) one runner filters on. */
#define PT_MAX_PORTS 64
/* Network namespaces in scope: the node's own plus one per traced pod. */
#define PT_MAX_NETNS (PT_MAX_PODS + 1)
/* Scopes up to this many namespaces are compared, not looked up. */
#define PT_FEW_NETNS 4
/* Sockets connect()ed in traced pods since the trace started and not yet
 * closed (accepted ones are not kept); LRU, so a burst beyond this only
 * loses pid/comm and open times of the oldest. An LRU map is allocated
 * whole when created, so its size is start-up time and memory. */
#define PT_MAX_SOCKS 16384
/* Flows (proto, client IP, server IP:port) counted in the kernel; LRU. */
#define PT_MAX_FLOWS 16384
/* kfree_skb reasons that are not reported as drops (QUEUE_PURGE, SKB_CONSUMED:
 * see ignored_drop_reasons in podtrace.bpf.c); room to spare. */
#define PT_MAX_IGNORED_DROP_REASONS 4
/* Default ring buffer size (the runner may resize it before load). Its
 * pages are mapped twice into the runner, so this costs 2x in RSS. */
#define PT_RINGBUF_BYTES (1024 * 1024)
/* Most bytes of a packet one event carries (--snaplen; 0 asks for this
 * many). The record is assembled in a per-CPU buffer, whose values the
 * kernel caps at 32 KiB; GSO packets on a veth can be longer (cut here). */
#define PT_MAX_SNAPLEN 16384
/* DNS: packets from or to this port carry their first bytes to the runner
 * even without --snaplen (packets.bpf.c's `dns_snaplen`). */
#define PT_DNS_PORT 53

/* What an event reports; `kind` in struct pt_event. */
enum pt_kind {
	PT_CONNECT = 1,
	PT_ACCEPT = 2,
	PT_ESTABLISHED = 3,
	PT_CLOSE = 4,
	PT_FAILED = 5,
	PT_RESET_SENT = 6,
	PT_RESET_RECEIVED = 7,
	PT_RETRANSMIT = 8,
	PT_DROP = 9,
	PT_PACKET = 10,
	PT_ICMP = 11, /* a struct pt_icmp: an ICMP or ICMPv6 error about a flow */
};

/* `direction` of a PT_PACKET, from the pod's point of view. */
enum pt_direction {
	PT_DIR_INGRESS = 0, /* entering the pod (tc egress of the host side) */
	PT_DIR_EGRESS = 1,  /* leaving the pod (tc ingress of the host side) */
};

/* TCP states, as include/net/tcp_states.h (stable: part of the tcp_info
 * ABI); `reason` of a PT_RETRANSMIT. */
enum pt_tcp_state {
	PT_TCP_ESTABLISHED = 1,
	PT_TCP_SYN_SENT = 2,
	PT_TCP_SYN_RECV = 3,
	PT_TCP_FIN_WAIT1 = 4,
	PT_TCP_FIN_WAIT2 = 5,
	PT_TCP_TIME_WAIT = 6,
	PT_TCP_CLOSE = 7,
	PT_TCP_CLOSE_WAIT = 8,
	PT_TCP_LAST_ACK = 9,
	PT_TCP_LISTEN = 10,
	PT_TCP_CLOSING = 11,
	PT_TCP_NEW_SYN_RECV = 12,
};

/* TCP header flag bits; `tcp_flags` of a PT_PACKET. */
enum pt_tcp_flag {
	PT_TCP_FIN = 0x01,
	PT_TCP_SYN = 0x02,
	PT_TCP_RST = 0x04,
	PT_TCP_PSH = 0x08,
	PT_TCP_ACK = 0x10,
	PT_TCP_URG = 0x20,
	PT_TCP_ECE = 0x40,
	PT_TCP_CWR = 0x80,
};

/*
 * An address: IPv6, or IPv4 as an IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d), so one layout serves both families.
 */
struct pt_ip {
	__u8 addr[16];
};

/* One event, written to the `events` ring buffer. */
struct pt_event {
	__u64 ts_ns;          /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 duration_ns;    /* close: since connect/accept; 0 when opened before the trace */
	__u64 bytes_sent;     /* close: bytes of this socket acked by the peer */
	__u64 bytes_received; /* close: bytes this socket received */
	struct pt_ip saddr;   /* connection events: opener; packet/drop: packet source */
	struct pt_ip daddr;   /* connection events: acceptor; packet/drop: packet destination */
	__u32 pid;            /* tgid of the caller; 0 when not known (softirq) */
	__u32 rtt_us;         /* established: smoothed handshake RTT */
	__u32 len;            /* packet: bytes from the IP header on */
	__u32 ifindex;        /* packet/drop: interface (in netns `netns`), 0 if none */
	__u32 netns;          /* inode of the network namespace it was seen in */
	__u32 reason;         /* drop: enum skb_drop_reason; failed: errno (0: none known); retransmit: enum pt_tcp_state */
	__u16 sport;          /* host byte order */
	__u16 dport;          /* host byte order */
	__u8 kind;            /* enum pt_kind */
	__u8 proto;           /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 tcp_flags;       /* packet: TCP flags byte (enum pt_tcp_flag bits) */
	__u8 direction;       /* packet: enum pt_direction */
	__u8 first;           /* packet: first packet of a flow the kernel had not seen */
	__u8 has_pid;         /* pid/comm are valid */
	__u8 oriented;        /* connection events: saddr/daddr known to be opener/acceptor (else guessed from the ports) */
	__u8 by_opener;       /* connection events: 1 if the opener's socket reported it (saddr is local), 0 the acceptor's */
	char comm[PT_COMM_LEN];
};

/* A packet event with the first bytes of its frame, Ethernet header on,
 * written instead of a bare pt_event when the runner asks for payload
 * (packets.bpf.c's `snaplen`). Only `caplen` bytes of `data` go into the
 * ring: the record ends there. */
struct pt_packet {
	struct pt_event ev;
	__u32 caplen;         /* bytes of data that follow */
	__u32 pad;
	__u8 data[PT_MAX_SNAPLEN];
};

/* What an ICMP or ICMPv6 error says, beyond the flow it quotes. */
struct pt_icmp_info {
	struct pt_ip from;    /* who sent the error (its outer source) */
	__u32 mtu;            /* frag needed / packet too big: the MTU it announces; else 0 */
	__u8 type;            /* ICMP type (ICMPv6 when `from` is IPv6) */
	__u8 code;
	__u8 pad[2];
};

/* A PT_ICMP event: `ev` describes the packet the error quotes (its
 * addresses, ports and protocol, as a packet event's), and where the
 * error crossed a pod's host-side interface (ifindex, direction, len). */
struct pt_icmp {
	struct pt_event ev;
	struct pt_icmp_info icmp;
};

/* A flow as the summary reports it: all connections from a client IP to a
 * server IP:port. Key of the `flows` map. */
struct pt_flow_key {
	struct pt_ip client;
	struct pt_ip server;
	__u16 server_port;    /* host byte order */
	__u8 proto;
	__u8 pad;
};

/* Counters of one flow, counted once per packet at the pods' host-side
 * interfaces. Value of the `flows` map. */
struct pt_flow_stats {
	__u64 packets_sent;      /* client -> server */
	__u64 bytes_sent;
	__u64 packets_received;  /* server -> client */
	__u64 bytes_received;
	__u64 drops;             /* kfree_skb of its packets in scope */
};

/* Per CPU: the flow last counted and its counts not yet in `flows`
 * (drops unused: those are counted in `flows` directly). */
struct pt_flow_cache {
	struct pt_flow_key key;
	struct pt_flow_stats pending;
	__u32 valid;
	__u32 pad;
};

/* A socket connect()ed while tracing. Value of the `socks` map. */
struct pt_sock {
	__u64 start_ns;       /* when connect() / the passive open happened */
	__u32 pid;
	__u32 netns;          /* inode of its network namespace */
	__u32 err;            /* SYN_SENT: the error last reported on it (errno), 0 if none */
	__u8 active;          /* 1: connect() side, 0: accepted side */
	__u8 connect_pending; /* connect event not yet written (no local port yet) */
	__u8 has_pid;
	__u8 pad;
	char comm[PT_COMM_LEN];
};

#endif /* __PODTRACE_H */
