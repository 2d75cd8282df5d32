// SPDX-License-Identifier: GPL-2.0
/*
 * podtrace.bpf.c - what the kernel sees of a node's traced pods.
 *
 * Hooks: raw tracepoints (no tracefs, no kprobes needed) for TCP state
 * changes, retransmits, resets and skb drops; tc programs on each pod's
 * host-side interface for packets. Everything is filtered here, through
 * should_discard() and the netns scope, so unrelated traffic never reaches
 * the ring buffer. The tc programs only observe: they always hand the
 * packet on unchanged (TC_ACT_UNSPEC, which is TCX_NEXT under tcx).
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "podtrace.h"

char LICENSE[] SEC("license") = "GPL";

/* Filters, set by the runner before load; zero means "no filter". */
const volatile __u8 filter_peers = 0; /* only traffic with peer_ips */
const volatile __u8 filter_ports = 0; /* only traffic with one of `ports` */
const volatile __u8 trace_packets = 0; /* an event for every packet */
/* Wake the reader only once this much is queued; below it the runner's
 * periodic poll picks events up (so latency is bounded by its interval).
 * Set by the runner to a fraction of the ring buffer's size. */
const volatile __u32 wakeup_bytes = PT_RINGBUF_BYTES / 8;

/* Dummy instances: make libbpf-cargo emit these types into the skeleton's
 * `types` module, so Rust decodes with the same definitions. */
struct pt_event _pt_event = {};
struct pt_flow_key _pt_flow_key = {};
struct pt_flow_stats _pt_flow_stats = {};
enum pt_kind _pt_kind = PT_CONNECT;
enum pt_direction _pt_direction = PT_DIR_INGRESS;

/*
 * pod_ips: the traced pods' addresses.
 * Inserted by the runner before attaching; never deleted (dies with it).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PT_MAX_PODS);
	__type(key, struct pt_ip);
	__type(value, __u8);
} pod_ips SEC(".maps");

/*
 * peer_ips: --peer-ip addresses, consulted only when filter_peers is set.
 * Inserted by the runner before attaching; never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PT_MAX_PEERS);
	__type(key, struct pt_ip);
	__type(value, __u8);
} peer_ips SEC(".maps");

/*
 * ports: --port values (host byte order), consulted only when filter_ports
 * is set. Inserted by the runner before attaching; never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PT_MAX_PORTS);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

/*
 * netns_scope: inodes of the network namespaces whose sockets and drops we
 * report (the node's own and each traced pod's). Several runners share one
 * kernel in the sandbox; this is what keeps each to its own node.
 * Inserted by the runner before attaching; never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PT_MAX_NETNS);
	__type(key, __u32);
	__type(value, __u8);
} netns_scope SEC(".maps");

/*
 * socks: sockets opened while tracing, keyed by struct sock address, for
 * the opener's pid/comm, the open time and which side opened.
 * Inserted by pt_set_state on SYN_SENT (connect) and SYN_RECV (passive
 * open); deleted by pt_set_state on CLOSE. LRU evicts sockets whose CLOSE
 * we never saw.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PT_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct pt_sock);
} socks SEC(".maps");

/*
 * flows: per-flow packet, byte and drop counters.
 * Inserted by the tc programs on a flow's first packet and by pt_kfree_skb
 * on a drop of an unseen flow; never deleted in the kernel (LRU evicts the
 * oldest). The runner reads it for the summary at exit.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PT_MAX_FLOWS);
	__type(key, struct pt_flow_key);
	__type(value, struct pt_flow_stats);
} flows SEC(".maps");

/*
 * events: every event, to the runner.
 * Reserved and submitted by every program (reserve_event/submit_event);
 * consumed, and so freed, by the runner's ring-buffer reader.
 */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PT_RINGBUF_BYTES);
} events SEC(".maps");

/*
 * lost: events dropped because the ring buffer was full, per CPU.
 * Incremented by reserve_event(); read (never reset) by the runner, which
 * reports the growth as `lost` lines.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

static __always_inline void ip_from_v4(struct pt_ip *ip, __be32 v4)
{
	__builtin_memset(ip, 0, sizeof(*ip));
	ip->addr[10] = 0xff;
	ip->addr[11] = 0xff;
	__builtin_memcpy(&ip->addr[12], &v4, 4);
}

/* Set membership; reads the value so the compiler cannot merge two
 * lookups into pointer arithmetic the verifier rejects. */
static __always_inline bool in_set(void *map, const void *key)
{
	__u8 *v = bpf_map_lookup_elem(map, key);

	return v && *v;
}

static __always_inline bool is_pod_ip(const struct pt_ip *ip)
{
	return in_set(&pod_ips, ip);
}

/*
 * The one filter every program applies: true when traffic between a:aport
 * and b:bport is none of our business. One side must be a traced pod; with
 * --peer-ip the other side must be a peer (or another traced pod); with
 * --port one of the ports must be listed.
 */
static __always_inline bool should_discard(const struct pt_ip *a, __u16 aport,
					   const struct pt_ip *b, __u16 bport)
{
	bool a_pod = is_pod_ip(a), b_pod = is_pod_ip(b);

	if (!a_pod && !b_pod)
		return true;
	if (filter_peers) {
		bool ok = (a_pod && (b_pod || in_set(&peer_ips, b))) ||
			  (b_pod && in_set(&peer_ips, a));
		if (!ok)
			return true;
	}
	if (filter_ports && !in_set(&ports, &aport) && !in_set(&ports, &bport))
		return true;
	return false;
}

static __always_inline __u32 sk_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

static __always_inline bool netns_in_scope(__u32 inum)
{
	return inum && in_set(&netns_scope, &inum);
}

/* A socket's own view of its connection. */
struct sk_tuple {
	struct pt_ip local;
	struct pt_ip remote;
	__u16 lport;
	__u16 rport;
};

static __always_inline bool read_sk_tuple(const struct sock *sk, struct sk_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == PT_AF_INET) {
		ip_from_v4(&t->local, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		ip_from_v4(&t->remote, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else if (family == PT_AF_INET6) {
		BPF_CORE_READ_INTO(&t->local.addr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&t->remote.addr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return false;
	}
	/* By CLOSE the kernel has released the port (skc_num is 0), but
	 * inet_sport keeps it; before connect() binds, both are 0. Timewait
	 * and request sockets are no inet_sock: only sock_common is theirs. */
	__u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);

	t->lport = 0;
	if (state != PT_TCP_TIME_WAIT && state != PT_TCP_NEW_SYN_RECV)
		t->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (!t->lport)
		t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	return true;
}

static __always_inline struct pt_event *reserve_event(void)
{
	struct pt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		__u32 zero = 0;
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);

		if (n)
			*n += 1;
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

static __always_inline void submit_event(struct pt_event *e)
{
	/* Batch wake-ups: the runner polls on a short timer anyway, so only
	 * a filling buffer is worth an immediate wake-up. */
	__u64 queued = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);

	bpf_ringbuf_submit(e, queued >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

/*
 * Orients a socket's tuple as opener -> acceptor. `active` is 1 for the
 * connect() side, 0 for the accepted side, -1 when unknown (a socket older
 * than the trace): then the lower port is taken as the server's.
 */
static __always_inline void fill_conn(struct pt_event *e, const struct sk_tuple *t, int active,
				      __u32 inum)
{
	if (active < 0)
		active = t->lport >= t->rport;
	if (active) {
		e->saddr = t->local;
		e->sport = t->lport;
		e->daddr = t->remote;
		e->dport = t->rport;
	} else {
		e->saddr = t->remote;
		e->sport = t->rport;
		e->daddr = t->local;
		e->dport = t->lport;
	}
	e->proto = IPPROTO_TCP;
	e->netns = inum;
}

static __always_inline void fill_task(struct pt_event *e, const struct pt_sock *s)
{
	if (s && s->has_pid) {
		e->pid = s->pid;
		e->has_pid = 1;
		__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	}
}

static __always_inline void emit_conn(__u8 kind, const struct sk_tuple *t, const struct pt_sock *s,
				      __u32 inum, __u64 ts, __u32 reason)
{
	struct pt_event *e = reserve_event();

	if (!e)
		return;
	e->kind = kind;
	if (ts)
		e->ts_ns = ts;
	fill_conn(e, t, s ? s->active : -1, inum);
	fill_task(e, s);
	e->reason = reason;
	submit_event(e);
}

/* The connect event waits for the local port, which connect() picks only
 * after entering SYN_SENT; written at the socket's next sign of life. */
static __always_inline void flush_connect(struct pt_sock *s, const struct sk_tuple *t, __u32 inum)
{
	if (s && s->connect_pending && t->lport) {
		s->connect_pending = 0;
		emit_conn(PT_CONNECT, t, s, inum, s->start_ns, 0);
	}
}

SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(pt_set_state, const struct sock *sk, int oldstate, int newstate)
{
	struct sk_tuple t = {};
	struct pt_sock *s;
	__u64 key = (__u64)sk;
	__u32 inum;

	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	inum = sk_netns(sk);
	if (!netns_in_scope(inum) || !read_sk_tuple(sk, &t))
		return 0;
	/* In SYN_SENT the local port is still 0: filter on the remote one. */
	if (should_discard(&t.local, t.lport ? t.lport : t.rport, &t.remote, t.rport))
		return 0;

	if (newstate == PT_TCP_SYN_SENT) {
		struct pt_sock ns = {};
		__u64 id = bpf_get_current_pid_tgid();

		ns.start_ns = bpf_ktime_get_ns();
		ns.active = 1;
		ns.connect_pending = 1;
		ns.pid = id >> 32;
		ns.has_pid = 1;
		bpf_get_current_comm(ns.comm, sizeof(ns.comm));
		bpf_map_update_elem(&socks, &key, &ns, BPF_ANY);
		return 0;
	}
	if (newstate == PT_TCP_SYN_RECV) {
		struct pt_sock ns = {};

		ns.start_ns = bpf_ktime_get_ns();
		bpf_map_update_elem(&socks, &key, &ns, BPF_ANY);
		emit_conn(PT_ACCEPT, &t, &ns, inum, 0, 0);
		return 0;
	}

	s = bpf_map_lookup_elem(&socks, &key);
	if (newstate == PT_TCP_ESTABLISHED) {
		struct pt_event *e;

		flush_connect(s, &t, inum);
		e = reserve_event();
		if (!e)
			return 0;
		e->kind = PT_ESTABLISHED;
		fill_conn(e, &t, s ? s->active : -1, inum);
		fill_task(e, s);
		e->rtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
		submit_event(e);
		return 0;
	}
	if (newstate == PT_TCP_CLOSE) {
		flush_connect(s, &t, inum);
		if (oldstate == PT_TCP_SYN_SENT) {
			int err = BPF_CORE_READ(sk, sk_err);

			emit_conn(PT_FAILED, &t, s, inum, 0, err);
		} else if (oldstate != PT_TCP_LISTEN) {
			struct pt_event *e = reserve_event();

			if (e) {
				e->kind = PT_CLOSE;
				fill_conn(e, &t, s ? s->active : -1, inum);
				fill_task(e, s);
				if (s)
					e->duration_ns = e->ts_ns - s->start_ns;
				e->bytes_sent = BPF_CORE_READ((struct tcp_sock *)sk, bytes_acked);
				e->bytes_received = BPF_CORE_READ((struct tcp_sock *)sk, bytes_received);
				submit_event(e);
			}
		}
		if (s)
			bpf_map_delete_elem(&socks, &key);
	}
	return 0;
}

SEC("raw_tp/tcp_retransmit_skb")
int BPF_PROG(pt_retransmit, const struct sock *sk, const struct sk_buff *skb)
{
	struct sk_tuple t = {};
	struct pt_sock *s;
	__u64 key = (__u64)sk;
	__u32 inum;

	inum = sk_netns(sk);
	if (!netns_in_scope(inum) || !read_sk_tuple(sk, &t))
		return 0;
	if (should_discard(&t.local, t.lport, &t.remote, t.rport))
		return 0;
	s = bpf_map_lookup_elem(&socks, &key);
	flush_connect(s, &t, inum);
	emit_conn(PT_RETRANSMIT, &t, s, inum, 0, BPF_CORE_READ(sk, __sk_common.skc_state));
	return 0;
}

SEC("raw_tp/tcp_receive_reset")
int BPF_PROG(pt_receive_reset, const struct sock *sk)
{
	struct sk_tuple t = {};
	__u64 key = (__u64)sk;
	__u32 inum;

	inum = sk_netns(sk);
	if (!netns_in_scope(inum) || !read_sk_tuple(sk, &t))
		return 0;
	if (should_discard(&t.local, t.lport, &t.remote, t.rport))
		return 0;
	struct pt_sock *s = bpf_map_lookup_elem(&socks, &key);

	flush_connect(s, &t, inum);
	emit_conn(PT_RESET_RECEIVED, &t, s, inum, 0, 0);
	return 0;
}

/* Addresses, ports and size of an IP packet with TCP or UDP in it. */
struct pkt {
	struct pt_ip src;
	struct pt_ip dst;
	__u16 sport;
	__u16 dport;
	__u32 len;	/* from the IP header on */
	__u8 proto;
};

/* Reads a packet's headers from an skb seen at a tracepoint (its network
 * header set). IPv6 extension headers are not followed. */
static __always_inline bool read_skb_pkt(const struct sk_buff *skb, struct pkt *pk)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	__u16 p[2] = {};
	__u32 l4;

	if (nh == (__u16)~0U)
		return false;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr iph;

		if (bpf_probe_read_kernel(&iph, sizeof(iph), head + nh) || iph.version != 4)
			return false;
		if (iph.frag_off & bpf_htons(0x1fff))
			return false;
		ip_from_v4(&pk->src, iph.saddr);
		ip_from_v4(&pk->dst, iph.daddr);
		pk->proto = iph.protocol;
		pk->len = bpf_ntohs(iph.tot_len);
		l4 = nh + iph.ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		if (bpf_probe_read_kernel(&ip6, sizeof(ip6), head + nh) || ip6.version != 6)
			return false;
		__builtin_memcpy(pk->src.addr, &ip6.saddr, 16);
		__builtin_memcpy(pk->dst.addr, &ip6.daddr, 16);
		pk->proto = ip6.nexthdr;
		pk->len = sizeof(ip6) + bpf_ntohs(ip6.payload_len);
		l4 = nh + sizeof(ip6);
	} else {
		return false;
	}
	if (pk->proto != IPPROTO_TCP && pk->proto != IPPROTO_UDP)
		return false;
	if (bpf_probe_read_kernel(p, sizeof(p), head + l4))
		return false;
	pk->sport = bpf_ntohs(p[0]);
	pk->dport = bpf_ntohs(p[1]);
	return true;
}

SEC("raw_tp/tcp_send_reset")
int BPF_PROG(pt_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct sk_tuple t = {};
	struct pt_sock *s = NULL;
	int active = -1;
	__u32 inum;

	if (sk) {
		/* Only sock_common is read: sk may be a timewait socket. */
		__u64 key = (__u64)sk;

		inum = sk_netns(sk);
		if (!netns_in_scope(inum) || !read_sk_tuple(sk, &t))
			return 0;
		s = bpf_map_lookup_elem(&socks, &key);
		if (s)
			active = s->active;
	} else if (skb) {
		/* No socket (e.g. a SYN to a closed port): the reset answers
		 * this incoming skb, whose sender opened the connection. */
		struct pkt pk = {};

		inum = BPF_CORE_READ(skb, dev, nd_net.net, ns.inum);
		if (!netns_in_scope(inum) || !read_skb_pkt(skb, &pk))
			return 0;
		t.local = pk.dst;
		t.remote = pk.src;
		t.lport = pk.dport;
		t.rport = pk.sport;
		active = 0;
	} else {
		return 0;
	}
	if (should_discard(&t.local, t.lport, &t.remote, t.rport))
		return 0;

	struct pt_event *e = reserve_event();

	if (!e)
		return 0;
	e->kind = PT_RESET_SENT;
	fill_conn(e, &t, active, inum);
	fill_task(e, s);
	submit_event(e);
	return 0;
}

/* Finds the flow a packet a:aport -> b:bport belongs to, creating it when
 * `create` (the opener is guessed from `syn_ack`/ports when not known).
 * Sets *forward when the packet goes client -> server. */
static __always_inline struct pt_flow_stats *flow_of(const struct pt_ip *a, __u16 aport,
						     const struct pt_ip *b, __u16 bport, __u8 proto,
						     int opener_is_a, bool *forward, bool *created)
{
	struct pt_flow_key k = {};
	struct pt_flow_stats *st;

	k.proto = proto;
	k.client = *a;
	k.server = *b;
	k.server_port = bport;
	st = bpf_map_lookup_elem(&flows, &k);
	if (st) {
		*forward = true;
		return st;
	}
	k.client = *b;
	k.server = *a;
	k.server_port = aport;
	st = bpf_map_lookup_elem(&flows, &k);
	if (st) {
		*forward = false;
		return st;
	}
	if (opener_is_a < 0)
		opener_is_a = aport >= bport;
	*forward = opener_is_a;
	if (opener_is_a) {
		k.client = *a;
		k.server = *b;
		k.server_port = bport;
	}
	struct pt_flow_stats zero = {};

	/* NOEXIST: another CPU may have created it meanwhile; use theirs. */
	if (!bpf_map_update_elem(&flows, &k, &zero, BPF_NOEXIST))
		*created = true;
	return bpf_map_lookup_elem(&flows, &k);
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(pt_kfree_skb, struct sk_buff *skb, void *location, int reason)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct pkt pk = {};
	__u32 inum;
	bool fwd = false, created = false;

	/* The namespace of the device it was on, else of its socket. */
	if (dev)
		inum = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	else
		inum = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	if (!netns_in_scope(inum) || !read_skb_pkt(skb, &pk))
		return 0;
	if (should_discard(&pk.src, pk.sport, &pk.dst, pk.dport))
		return 0;

	struct pt_flow_stats *st =
		flow_of(&pk.src, pk.sport, &pk.dst, pk.dport, pk.proto, -1, &fwd, &created);
	if (st)
		__sync_fetch_and_add(&st->drops, 1);

	struct pt_event *e = reserve_event();

	if (!e)
		return 0;
	e->kind = PT_DROP;
	e->saddr = pk.src;
	e->daddr = pk.dst;
	e->sport = pk.sport;
	e->dport = pk.dport;
	e->proto = pk.proto;
	e->reason = reason;
	e->netns = inum;
	e->len = pk.len;
	if (dev)
		e->ifindex = BPF_CORE_READ(dev, ifindex);
	submit_event(e);
	return 0;
}

#define PT_TCP_FIN 0x01
#define PT_TCP_SYN 0x02
#define PT_TCP_RST 0x04
#define PT_TCP_ACK 0x10

static __always_inline void handle_packet(struct __sk_buff *skb, __u8 direction)
{
	struct pt_ip src, dst;
	__u16 p[2];
	__u8 flags = 0, proto;
	bool fwd = false, created = false;
	int opener_is_src = -1;
	__u32 l4;

	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr iph;

		if (bpf_skb_load_bytes(skb, ETH_HLEN, &iph, sizeof(iph)))
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
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
			return;
		__builtin_memcpy(src.addr, &ip6.saddr, 16);
		__builtin_memcpy(dst.addr, &ip6.daddr, 16);
		proto = ip6.nexthdr;
		l4 = ETH_HLEN + sizeof(ip6);
	} else {
		return;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return;
	if (bpf_skb_load_bytes(skb, l4, p, sizeof(p)))
		return;
	if (proto == IPPROTO_TCP) {
		if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1))
			return;
		if ((flags & (PT_TCP_SYN | PT_TCP_ACK)) == PT_TCP_SYN)
			opener_is_src = 1;
		else if ((flags & (PT_TCP_SYN | PT_TCP_ACK)) == (PT_TCP_SYN | PT_TCP_ACK))
			opener_is_src = 0;
	} else {
		/* UDP: the first sender we see opened the flow. */
		opener_is_src = 1;
	}
	__u16 sport = bpf_ntohs(p[0]), dport = bpf_ntohs(p[1]);

	if (should_discard(&src, sport, &dst, dport))
		return;

	__u32 len = skb->len > ETH_HLEN ? skb->len - ETH_HLEN : 0;
	struct pt_flow_stats *st =
		flow_of(&src, sport, &dst, dport, proto, opener_is_src, &fwd, &created);

	/* Count each packet once: where it leaves a pod, or where it enters
	 * one when it did not come from another traced pod. */
	if (st && (direction == PT_DIR_EGRESS || !is_pod_ip(&src))) {
		if (fwd) {
			__sync_fetch_and_add(&st->packets_sent, 1);
			__sync_fetch_and_add(&st->bytes_sent, len);
		} else {
			__sync_fetch_and_add(&st->packets_received, 1);
			__sync_fetch_and_add(&st->bytes_received, len);
		}
	}

	bool report = trace_packets || (flags & (PT_TCP_SYN | PT_TCP_FIN | PT_TCP_RST)) ||
		      (created && proto == IPPROTO_UDP);
	if (!report)
		return;
	struct pt_event *e = reserve_event();

	if (!e)
		return;
	e->kind = PT_PACKET;
	e->saddr = src;
	e->daddr = dst;
	e->sport = sport;
	e->dport = dport;
	e->proto = proto;
	e->tcp_flags = flags;
	e->direction = direction;
	e->first = created;
	e->len = len;
	e->ifindex = skb->ifindex;
	submit_event(e);
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
