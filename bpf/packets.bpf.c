// SPDX-License-Identifier: GPL-2.0
/*
 * packets.bpf.c - packets at each traced pod's host-side interface: per-flow
 * counters in the kernel, an event for every SYN, FIN and RST (and with
 * --packets for every packet), and ICMP errors about traced flows.
 * Attached as tcx links or clsact filters.
 * The programs only observe: they always hand the packet on unchanged
 * (TC_ACT_UNSPEC, which is TCX_NEXT under tcx). The maps are shared with
 * podtrace.bpf.c (see shared.bpf.h).
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "podtrace.h"
#include "shared.bpf.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u8 trace_packets = 0; /* an event for every packet */
/* An event with at least this many first bytes of every packet from or to
 * port PT_DNS_PORT (`snaplen`, if more), for the runner to read DNS from;
 * 0: none. Set by the runner to --snaplen's default (a whole classic DNS
 * message behind the largest headers). */
const volatile __u32 dns_snaplen = 0;

/*
 * packet_buf: per CPU, where a packet event with payload is put together
 * before bpf_ringbuf_output copies just its length into `events` (a
 * reserved record's size is fixed when the program is verified: it would
 * take PT_MAX_SNAPLEN of the ring for every packet).
 * Written by the tc programs on their own CPU (tc runs do not nest on a
 * CPU); used only when `snaplen` is set. Never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_packet);
} packet_buf SEC(".maps");

/*
 * flow_cache: per CPU, the flow this CPU's tc programs counted last and the
 * packets and bytes counted for it since, not yet in `flows`. Consecutive
 * packets mostly belong to one flow (the key has no client port, so every
 * connection between two pods is one flow): a 36-byte compare instead of a
 * hash lookup per packet.
 * Written by the tc programs on their own CPU (tc runs do not nest on a
 * CPU); the pending counts move to `flows` when the CPU meets another flow.
 * The runner adds what is still pending at exit. Never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_flow_cache);
} flow_cache SEC(".maps");

/* Whether the key's words equal (both 8-byte aligned: stack or map). */
static __always_inline bool same_flow(const struct pt_flow_key *x, const struct pt_flow_key *y)
{
	const __u64 *a = (const __u64 *)x, *b = (const __u64 *)y;
	const __u32 *a4 = (const __u32 *)&a[4], *b4 = (const __u32 *)&b[4];

	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (*a4 ^ *b4));
}

/* Whether this CPU's cached flow is the packet's; sets *forward then. */
static __always_inline bool cached_flow(const struct pt_flow_cache *c, const struct pt_ip *a,
					__u16 aport, const struct pt_ip *b, __u16 bport, __u8 proto,
					bool *forward)
{
	struct pt_flow_key k __attribute__((aligned(8)));

	if (!c->valid)
		return false;
	/* Either side may be the opener: both orientations. */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		bool a_opens = i == 0;

		flow_key(&k, a, aport, b, bport, proto, a_opens);
		if (same_flow(&k, &c->key)) {
			*forward = a_opens;
			return true;
		}
	}
	return false;
}

/* Moves this CPU's pending counts into `flows` (re-creating the flow if
 * the LRU evicted it meanwhile) and empties the cache. */
static __always_inline void flush_flow_cache(struct pt_flow_cache *c)
{
	if (!c->valid)
		return;
	c->valid = 0;
	if (!c->pending.packets_sent && !c->pending.packets_received)
		return;
	struct pt_flow_stats *st = bpf_map_lookup_elem(&flows, &c->key);

	if (!st) {
		struct pt_flow_stats zero = {};

		bpf_map_update_elem(&flows, &c->key, &zero, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&flows, &c->key);
		if (!st)
			return;
	}
	__sync_fetch_and_add(&st->packets_sent, c->pending.packets_sent);
	__sync_fetch_and_add(&st->bytes_sent, c->pending.bytes_sent);
	__sync_fetch_and_add(&st->packets_received, c->pending.packets_received);
	__sync_fetch_and_add(&st->bytes_received, c->pending.bytes_received);
}

static __always_inline void cache_flow(struct pt_flow_cache *c, const struct pt_ip *a, __u16 aport,
				       const struct pt_ip *b, __u16 bport, __u8 proto, bool a_opens)
{
	flow_key(&c->key, a, aport, b, bport, proto, a_opens);
	__builtin_memset(&c->pending, 0, sizeof(c->pending));
	c->valid = 1;
}

/* Copies len bytes at off of the packet into buf: straight from the
 * linear data when they are there (the common case, and much cheaper than
 * the helper), else through bpf_skb_load_bytes. The headers we read sit
 * where the kernel aligns them (NET_IP_ALIGN counted in), and unaligned
 * packet loads are fine wherever the verifier does not demand strict
 * alignment: told so, clang copies in words instead of a load, shift and
 * or per byte (~190 fewer instructions per packet). */
static __always_inline int load(struct __sk_buff *skb, __u32 off, void *buf, __u32 len)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (off <= 128 && data + off + len <= end) {
		__builtin_memcpy(buf, __builtin_assume_aligned(data + off, 4), len);
		return 0;
	}
	return bpf_skb_load_bytes(skb, off, buf, len);
}

/* ICMP types that report an error about a packet (RFC 792, RFC 4443). */
#define PT_ICMP_DEST_UNREACH 3
#define PT_ICMP_FRAG_NEEDED 4 /* code of PT_ICMP_DEST_UNREACH */
#define PT_ICMP_TIME_EXCEEDED 11
#define PT_ICMP_PARAMETERPROB 12
#define PT_ICMPV6_PKT_TOOBIG 2
#define PT_ICMPV6_INFO_MIN 128 /* ICMPv6 types from here on are not errors */

/*
 * An ICMP or ICMPv6 error crossing a pod's interface, from `from`, whose
 * header starts at `l4`: reported (PT_ICMP) when the packet it quotes (IP
 * header, then the first 8 bytes of TCP or UDP: the ports) is traffic we
 * trace, whoever sent the error (a router's or node's address is no peer).
 * Reported once, as packets are counted: where it leaves a pod, or where
 * it enters one when it did not come from a traced pod of this node. Not
 * counted in `flows`: it is not one of the flow's packets.
 * A subprogram, not inlined: inlined, its registers made handle_packet
 * spill on the TCP and UDP path too (3 more instructions a packet).
 */
static __noinline void handle_icmp(struct __sk_buff *skb, __u8 direction, bool v6,
					const struct pt_ip *from, __u32 l4)
{
	/* type, code, checksum, then 4 bytes that carry the MTU where there is one */
	__u8 h[8];
	struct pt_ip src = {}, dst = {};
	__u16 p[2];
	__u32 inner, mtu = 0;
	__u8 proto;

	if (load(skb, l4, h, sizeof(h)))
		return;
	if (v6) {
		struct ipv6hdr ip6;

		if (h[0] >= PT_ICMPV6_INFO_MIN)
			return;
		if (h[0] == PT_ICMPV6_PKT_TOOBIG)
			mtu = ((__u32)h[4] << 24) | ((__u32)h[5] << 16) | ((__u32)h[6] << 8) | h[7];
		if (load(skb, l4 + sizeof(h), &ip6, sizeof(ip6)))
			return;
		__builtin_memcpy(src.addr, &ip6.saddr, 16);
		__builtin_memcpy(dst.addr, &ip6.daddr, 16);
		proto = ip6.nexthdr;
		inner = l4 + sizeof(h) + sizeof(ip6);
	} else {
		struct iphdr iph;

		if (h[0] != PT_ICMP_DEST_UNREACH && h[0] != PT_ICMP_TIME_EXCEEDED &&
		    h[0] != PT_ICMP_PARAMETERPROB)
			return;
		if (h[0] == PT_ICMP_DEST_UNREACH && h[1] == PT_ICMP_FRAG_NEEDED)
			mtu = ((__u32)h[6] << 8) | h[7];
		if (load(skb, l4 + sizeof(h), &iph, sizeof(iph)))
			return;
		ip_from_v4(&src, iph.saddr);
		ip_from_v4(&dst, iph.daddr);
		proto = iph.protocol;
		inner = l4 + sizeof(h) + iph.ihl * 4;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return;
	if (load(skb, inner, p, sizeof(p)))
		return;
	__u16 sport = bpf_ntohs(p[0]), dport = bpf_ntohs(p[1]);

	if (should_discard(&src, sport, &dst, dport))
		return;
	if (direction == PT_DIR_INGRESS && is_pod_ip(from))
		return;
	struct pt_icmp *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_lost();
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ev.ts_ns = bpf_ktime_get_ns();
	e->ev.kind = PT_ICMP;
	e->ev.saddr = src;
	e->ev.daddr = dst;
	e->ev.sport = sport;
	e->ev.dport = dport;
	e->ev.proto = proto;
	e->ev.direction = direction;
	e->ev.len = skb->len > ETH_HLEN ? skb->len - ETH_HLEN : 0;
	e->ev.ifindex = skb->ifindex;
	e->icmp.from = *from;
	e->icmp.mtu = mtu;
	e->icmp.type = h[0];
	e->icmp.code = h[1];
	bpf_ringbuf_submit(e, wakeup_flags());
}

static __always_inline void fill_packet(struct pt_event *e, struct __sk_buff *skb,
					const struct pt_ip *src, __u16 sport,
					const struct pt_ip *dst, __u16 dport, __u8 proto,
					__u8 flags, __u8 direction, bool created, __u32 len)
{
	e->kind = PT_PACKET;
	e->saddr = *src;
	e->daddr = *dst;
	e->sport = sport;
	e->dport = dport;
	e->proto = proto;
	e->tcp_flags = flags;
	e->direction = direction;
	e->first = created;
	e->len = len;
	e->ifindex = skb->ifindex;
}

static __always_inline void handle_packet(struct __sk_buff *skb, __u8 direction)
{
	/* Zeroed up front: without it Linux 6.18's verifier fails with an
	 * internal "verifier bug: stack slot" on some option combinations
	 * (tests: every_filter_combination_loads). */
	struct pt_ip src = {}, dst = {};
	__u16 p[2];
	__u8 flags = 0, proto;
	bool fwd = false, created = false, src_pod = false;
	int opener_is_src = -1;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr iph;

		if (load(skb, ETH_HLEN, &iph, sizeof(iph)))
			return;
		/* Later fragments carry no ports. */
		if (iph.frag_off & bpf_htons(0x1fff))
			return;
		ip_from_v4(&src, iph.saddr);
		ip_from_v4(&dst, iph.daddr);
		proto = iph.protocol;
		l4 = ETH_HLEN + iph.ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		/* Extension headers are not followed: TCP/UDP right after. */
		if (load(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return;
		__builtin_memcpy(src.addr, &ip6.saddr, 16);
		__builtin_memcpy(dst.addr, &ip6.daddr, 16);
		proto = ip6.nexthdr;
		l4 = ETH_HLEN + sizeof(ip6);
	} else {
		return;
	}
	if (proto == IPPROTO_TCP) {
		/* Ports, and the flags byte at offset 13. */
		__u8 th[14];

		if (load(skb, l4, th, sizeof(th)))
			return;
		__builtin_memcpy(p, th, sizeof(p));
		flags = th[13];
		if ((flags & (PT_TCP_SYN | PT_TCP_ACK)) == PT_TCP_SYN)
			opener_is_src = 1;
		else if ((flags & (PT_TCP_SYN | PT_TCP_ACK)) == (PT_TCP_SYN | PT_TCP_ACK))
			opener_is_src = 0;
	} else if (proto == IPPROTO_UDP) {
		if (load(skb, l4, p, sizeof(p)))
			return;
		/* UDP: the first sender we see opened the flow. */
		opener_is_src = 1;
	} else {
		/* Behind the tests TCP and UDP pass: they pay nothing for it. */
		if (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6)
			handle_icmp(skb, direction, proto == IPPROTO_ICMPV6, &src, l4);
		return;
	}
	__u16 sport = bpf_ntohs(p[0]), dport = bpf_ntohs(p[1]);
	/* The pod behind this interface is the destination of what enters
	 * it and the source of what leaves: look that side up first. */
	bool entering = direction == PT_DIR_INGRESS, pod_side;

	if (entering) {
		if (should_discard_pod(&dst, dport, &src, sport, &pod_side))
			return;
		/* Is the source another traced pod of this node (whose leaving
		 * packets are counted already)? With one traced pod, only a
		 * hairpin from itself can be: no lookup needed. */
		if (!pod_side)
			src_pod = true;
		else if (single_pod)
			src_pod = !__builtin_memcmp(src.addr, dst.addr, sizeof(src.addr));
		else
			src_pod = is_pod_ip(&src);
	} else {
		if (should_discard_pod(&src, sport, &dst, dport, &src_pod))
			return;
	}

	/* A connect()ing pod's SYN, leaving it: its connect event first (the
	 * socket stays attached across the veth). */
	if (!entering && opener_is_src == 1 && proto == IPPROTO_TCP)
		flush_connect_of((__u64)skb->sk, flags, &src, sport, &dst, dport);

	__u32 len = skb->len > ETH_HLEN ? skb->len - ETH_HLEN : 0;
	__u32 zero = 0;
	struct pt_flow_cache *c = bpf_map_lookup_elem(&flow_cache, &zero);

	if (!c)
		return;
	if (!cached_flow(c, &src, sport, &dst, dport, proto, &fwd)) {
		struct pt_flow_stats *st =
			flow_of(&src, sport, &dst, dport, proto, opener_is_src, &fwd, &created);

		/* Hand the last flow's pending counts to `flows`, and cache
		 * this one (when it made it into the map). */
		flush_flow_cache(c);
		if (st)
			cache_flow(c, &src, sport, &dst, dport, proto, fwd);
	}
	/* Count each packet once: where it leaves a pod, or where it enters
	 * one when it did not come from another traced pod. */
	if (c->valid && (direction == PT_DIR_EGRESS || !src_pod)) {
		if (fwd) {
			c->pending.packets_sent += 1;
			c->pending.bytes_sent += len;
		} else {
			c->pending.packets_received += 1;
			c->pending.bytes_received += len;
		}
	}

	/* The runner tells a DNS-only report from the others by the same
	 * rule (trace_packets, flags, first), and does not show it as a packet. */
	bool dns = dns_snaplen && (sport == PT_DNS_PORT || dport == PT_DNS_PORT);
	bool report = trace_packets || (flags & (PT_TCP_SYN | PT_TCP_FIN | PT_TCP_RST)) ||
		      (created && proto == IPPROTO_UDP) || dns;
	if (!report)
		return;
	/* Bytes to copy. Tested once, with the event's two ways apart: a
	 * second test of a run-time value on a reserved record's path is one
	 * that older verifiers may not follow (an unreleased reference). */
	__u32 want = snaplen;

	if (dns && want < dns_snaplen)
		want = dns_snaplen;
	struct pt_event *e;

	if (!want) {
		e = reserve_event();
		if (!e)
			return;
		fill_packet(e, skb, &src, sport, &dst, dport, proto, flags, direction, created,
			    len);
		submit_event(e);
		return;
	}
	e = begin_bytes_event(&packet_buf);
	if (!e)
		return;
	fill_packet(e, skb, &src, sport, &dst, dport, proto, flags, direction, created, len);
	__u32 caplen = skb->len < want ? skb->len : want;

	if (caplen > PT_MAX_SNAPLEN)
		caplen = PT_MAX_SNAPLEN;
	if (caplen) {
		/* Bounds the verifier can see on every kernel: the length as
		 * 1 + a masked value, never 0 (5.10's verifier loses a "not
		 * zero" test made on another register, and the helper's
		 * length may not be 0 there). */
		__u32 n = ((caplen - 1) & (PT_MAX_SNAPLEN - 1)) + 1;

		if (bpf_skb_load_bytes(skb, 0, ((struct pt_packet *)e)->data, n))
			caplen = 0;
	}
	send_packet(e, caplen);
}

/* Host side ingress: the packet is leaving the pod. */
SEC("tc")
int pt_tc_ingress(struct __sk_buff *skb)
{
	handle_packet(skb, PT_DIR_EGRESS);
	return TC_ACT_UNSPEC;
}

/* Host side egress: the packet is entering the pod. */
SEC("tc")
int pt_tc_egress(struct __sk_buff *skb)
{
	handle_packet(skb, PT_DIR_INGRESS);
	return TC_ACT_UNSPEC;
}
