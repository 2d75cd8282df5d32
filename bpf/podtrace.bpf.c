// SPDX-License-Identifier: GPL-2.0
/*
 * podtrace.bpf.c - what the kernel sees of a node's traced pods' sockets.
 *
 * Hooks: BTF tracepoints for TCP state changes, retransmits and resets
 * (typed arguments: socket fields are plain loads, CO-RE relocated and
 * checked by the verifier, instead of a bpf_probe_read_kernel() call
 * each; inet_sock_set_state fires ~10 times per connection on the whole
 * node, so this is the hot path) and a raw tracepoint for skb drops
 * (its argument list grew across kernels). Neither needs tracefs. The packet programs on each
 * pod's host-side interface are in packets.bpf.c; the maps both use are
 * in shared.bpf.h. Everything is filtered here, through should_discard()
 * and the netns scope, so unrelated traffic never reaches the ring buffer.
 */
#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "podtrace.h"
#include "shared.bpf.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * kfree_skb reasons that are no packet loss on the network path (e.g.
 * QUEUE_PURGE: a socket's queue freed as the socket is destroyed, on every
 * normal close). Set by the runner before load, by name through the
 * running kernel's BTF (the numbers differ between kernels); 0 marks an
 * unused slot (SKB_NOT_DROPPED_YET never reaches kfree_skb).
 */
const volatile __u32 ignored_drop_reasons[PT_MAX_IGNORED_DROP_REASONS] = {};

/*
 * The reason under which this kernel frees a closed socket's queues when
 * its enum has no QUEUE_PURGE to name it: NOT_SPECIFIED (6.1 in the kernel
 * matrix), or 0 before drops had reasons (5.17). Such a packet, still
 * owned by a dead socket, had been delivered: no drop. Set by the runner;
 * the default matches no reason.
 */
const volatile __u32 unnamed_purge_reason = ~0U;

/* Dummy instances: make libbpf-cargo emit these types into the skeleton's
 * `types` module, so Rust decodes with the same definitions. */
struct pt_event _pt_event = {};
struct pt_flow_key _pt_flow_key = {};
struct pt_flow_stats _pt_flow_stats = {};
struct pt_flow_cache _pt_flow_cache = {};
struct pt_icmp _pt_icmp = {};
enum pt_kind _pt_kind = PT_CONNECT;
enum pt_direction _pt_direction = PT_DIR_INGRESS;
enum pt_tcp_state _pt_tcp_state = PT_TCP_ESTABLISHED;
enum pt_tcp_flag _pt_tcp_flag = PT_TCP_FIN;

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

/* `sk` is a BTF tracepoint argument: direct loads below. Where the kernel
 * has bpf_rdonly_cast (6.2), through an untrusted cast of it: the loads
 * stay plain (fault-guarded) loads, but the verifier no longer searches
 * the kernel's whole BTF by name for a "__safe_trusted" variant of each
 * pointer walked from a trusted one (the load time: docs/runner.md). */
static __always_inline __u32 sk_netns(const struct sock *sk)
{
	if (bpf_ksym_exists(bpf_rdonly_cast))
		return bpf_core_cast(sk, struct sock_common)->skc_net.net->ns.inum;
	return sk->__sk_common.skc_net.net->ns.inum;
}

/* The whole scope when it has at most PT_FEW_NETNS namespaces (the node's
 * and a pod's or three: the common case), set by the runner before load;
 * few_netns[0] == 0 means "use the map". Compared on every TCP state
 * change of the node instead of a hash lookup. */
const volatile __u32 few_netns[PT_FEW_NETNS] = {};

static __always_inline bool netns_in_scope(__u32 inum)
{
	if (!inum)
		return false;
	if (few_netns[0]) {
		bool in = false;

#pragma unroll
		for (int i = 0; i < PT_FEW_NETNS; i++)
			in |= few_netns[i] == inum;
		return in;
	}
	return in_set(&netns_scope, &inum);
}

/* A socket's own view of its connection. */
struct sk_tuple {
	struct pt_ip local;
	struct pt_ip remote;
	__u16 lport;
	__u16 rport;
};

static __always_inline bool read_sk_tuple_family(const struct sock *sk, __u16 family,
						 struct sk_tuple *t)
{
	if (family == PT_AF_INET) {
		ip_from_v4(&t->local, sk->__sk_common.skc_rcv_saddr);
		ip_from_v4(&t->remote, sk->__sk_common.skc_daddr);
	} else if (family == PT_AF_INET6) {
		__builtin_memcpy(t->local.addr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
		__builtin_memcpy(t->remote.addr, &sk->__sk_common.skc_v6_daddr, 16);
	} else {
		return false;
	}
	/* By CLOSE the kernel has released the port (skc_num is 0), but
	 * inet_sport keeps it; before connect() binds, both are 0. Timewait
	 * and request sockets are no inet_sock: only sock_common is theirs. */
	__u8 state = sk->__sk_common.skc_state;

	t->lport = 0;
	/* A cast the verifier cannot follow: read through the helper. */
	if (state != PT_TCP_TIME_WAIT && state != PT_TCP_NEW_SYN_RECV)
		t->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
	if (!t->lport)
		t->lport = sk->__sk_common.skc_num;
	t->rport = bpf_ntohs(sk->__sk_common.skc_dport);
	return true;
}

static __always_inline bool read_sk_tuple(const struct sock *sk, struct sk_tuple *t)
{
	return read_sk_tuple_family(sk, sk->__sk_common.skc_family, t);
}

/*
 * Orients a socket's tuple as opener -> acceptor. `active` is 1 for the
 * connect() side, 0 for the accepted side, -1 when unknown (an accepted
 * socket after its accept event, or a socket older than the trace): then
 * the lower port is taken as the server's and `oriented` is 0, and the
 * runner corrects accepted sockets from their accept event.
 */
static __always_inline void fill_conn(struct pt_event *e, const struct sk_tuple *t, int active,
				      __u32 inum)
{
	e->oriented = active >= 0;
	if (active < 0)
		active = t->lport >= t->rport;
	/* The local end is the opener exactly when it is oriented as saddr. */
	e->by_opener = active != 0;
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
				      __u32 inum, __u32 reason)
{
	struct pt_event *e = reserve_event();

	if (!e)
		return;
	e->kind = kind;
	fill_conn(e, t, s ? s->active : -1, inum);
	fill_task(e, s);
	e->reason = reason;
	submit_event(e);
}

/* The connect event waits for the local port, which connect() picks only
 * after entering SYN_SENT: written by the first program that sees it
 * (normally the tc program its SYN passes; see flush_connect). */
static __always_inline void flush_connect_sk(struct pt_sock *s, const struct sk_tuple *t)
{
	flush_connect(s, &t->local, t->lport, &t->remote, t->rport);
}

static __always_inline void handle_set_state(const struct sock *sk, int oldstate, int newstate)
{
	struct sk_tuple t = {};
	struct pt_sock *s;
	__u64 key = (__u64)sk;
	__u32 inum;

	__u16 family;

	/* This fires for every socket state change on the node: discard on
	 * the cheapest checks first. Only these three states report anything
	 * (the connect event a socket still owes is flushed at ESTABLISHED or
	 * CLOSE, which every socket reaches after SYN_SENT). */
	if (newstate != PT_TCP_SYN_SENT && newstate != PT_TCP_ESTABLISHED &&
	    newstate != PT_TCP_CLOSE)
		return;
	family = sk->__sk_common.skc_family;
	if (family != PT_AF_INET && family != PT_AF_INET6)
		return;
	if (sk->sk_protocol != IPPROTO_TCP)
		return;
	inum = sk_netns(sk);
	if (!netns_in_scope(inum) || !read_sk_tuple_family(sk, family, &t))
		return;
	/* In SYN_SENT the local port is still 0: filter on the remote one. */
	if (should_discard(&t.local, t.lport ? t.lport : t.rport, &t.remote, t.rport))
		return;

	if (newstate == PT_TCP_SYN_SENT) {
		struct pt_sock ns = {};
		__u64 id = bpf_get_current_pid_tgid();

		ns.start_ns = bpf_ktime_get_ns();
		ns.netns = inum;
		ns.active = 1;
		ns.connect_pending = 1;
		ns.pid = id >> 32;
		ns.has_pid = 1;
		bpf_get_current_comm(ns.comm, sizeof(ns.comm));
		bpf_map_update_elem(&socks, &key, &ns, BPF_ANY);
		return;
	}
	/* Out of SYN_RECV: an accepted socket, which socks never holds. The
	 * accept is reported here, not on entering SYN_RECV: on older kernels
	 * (6.1 and 6.12 in the kernel matrix, not 6.18) the child socket
	 * enters SYN_RECV while still a copy of the listener, without the
	 * peer's address and port; ESTABLISHED follows at once. */
	bool accepted = newstate == PT_TCP_ESTABLISHED && oldstate == PT_TCP_SYN_RECV;

	s = accepted ? NULL : bpf_map_lookup_elem(&socks, &key);
	if (newstate == PT_TCP_ESTABLISHED) {
		struct pt_event *e;

		if (accepted) {
			struct pt_sock passive = {}; /* active = 0: this side accepted */

			emit_conn(PT_ACCEPT, &t, &passive, inum, 0);
		}
		flush_connect_sk(s, &t);
		e = reserve_event();
		if (!e)
			return;
		e->kind = PT_ESTABLISHED;
		fill_conn(e, &t, accepted ? 0 : s ? s->active : -1, inum);
		fill_task(e, s);
		e->rtt_us = BPF_CORE_READ((struct tcp_sock *)sk, srtt_us) >> 3;
		submit_event(e);
		return;
	}
	if (newstate == PT_TCP_CLOSE) {
		flush_connect_sk(s, &t);
		if (oldstate == PT_TCP_SYN_SENT) {
			/* What SO_ERROR gives the caller: sk_err, else the soft
			 * error (an ICMP error that came while connect() held
			 * the socket). SO_ERROR clears what it returns, so when
			 * the caller has asked already, the error reported
			 * before (pt_error_report). */
			__u32 err = sk->sk_err;

			if (!err)
				err = sk->sk_err_soft;
			if (!err && s)
				err = s->err;
			emit_conn(PT_FAILED, &t, s, inum, err);
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
}

/*
 * set_state_covered: per CPU, how many of pt_set_state's skipped runs
 * pt_set_state_nested made up for, and where this CPU's copy of
 * pt_set_state's `active` count is (computed on the CPU's first run).
 * Written by pt_set_state_nested on its own CPU; `covered` is read by the
 * runner. Never deleted.
 */
struct set_state_covered {
	__u64 covered;
	__u64 active_here;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct set_state_covered);
} set_state_covered SEC(".maps");

/*
 * set_state_cover: where pt_set_state's `prog->active` lives, the kernel's
 * per-CPU "running here" count it checks before each run. BPF has no
 * per-CPU address of its own to offset from without kallsyms data
 * symbols, which most kernels lack, so the runner gathers raw addresses
 * with the two iterators below and sets `bias`: this CPU's count is at
 * (this CPU's set_state_covered value - this entry) + bias.
 * Written by pt_find_maps and pt_find_set_state (when the runner runs
 * them) and by the runner; read by pt_set_state_nested. Never deleted.
 */
struct set_state_cover {
	__u64 bias;          /* 0 until the runner has all three below */
	__u64 active;        /* pt_set_state's prog->active (a per-CPU pointer) */
	__u64 covered_pptr;  /* set_state_covered's per-CPU pointer */
	__u64 self_addr;     /* this entry's kernel address */
	__u32 prog_id;       /* set by the runner: pt_set_state's id */
	__u32 covered_id;    /* set by the runner: set_state_covered's id */
	__u32 self_id;       /* set by the runner: this map's id */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct set_state_cover);
} set_state_cover SEC(".maps");

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_set_state, const struct sock *sk, int oldstate, int newstate)
{
	handle_set_state(sk, oldstate, newstate);
	return 0;
}

/*
 * The kernel runs a program at most once per CPU at a time: a TCP state
 * change in a softirq that interrupts pt_set_state (running for a
 * process-context change on the same CPU) is skipped, and only counted in
 * the program's recursion_misses. Under load that loses accepts. So a
 * second program on the same tracepoint, attached after it, does the work
 * exactly then: the kernel has just skipped pt_set_state for this change
 * if and only if pt_set_state's own `active` count is still held on this
 * CPU, by the run this interrupt cut into (after a run of its own the
 * count is back to 0). That is the kernel's own test, read back, so there
 * is no window a flag set by pt_set_state would leave open at its entry
 * and exit. `covered` lets the runner subtract those from the misses.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(pt_set_state_nested, const struct sock *sk, int oldstate, int newstate)
{
	__u32 zero = 0;
	struct set_state_covered *here = bpf_map_lookup_elem(&set_state_covered, &zero);

	if (!here)
		return 0;
	if (!here->active_here) {
		struct set_state_cover *c = bpf_map_lookup_elem(&set_state_cover, &zero);

		if (!c || !c->bias)
			return 0;
		/* Pointer difference: this CPU's per-CPU offset, plus the
		 * constants the runner folded into bias. */
		here->active_here = ((__u64)here - (__u64)c) + c->bias;
	}
	if (bpf_core_cast((void *)here->active_here, struct refcount_struct)->refs.counter <= 0)
		return 0;
	here->covered += 1;
	handle_set_state(sk, oldstate, newstate);
	return 0;
}

static __always_inline struct set_state_cover *cover(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&set_state_cover, &zero);
}

/* Run once by the runner after attaching pt_set_state: records where
 * pt_set_state's `active` count is (the program struct is reachable only
 * through its link). */
SEC("iter/bpf_link")
int pt_find_set_state(struct bpf_iter__bpf_link *ctx)
{
	struct bpf_link *link = ctx->link;
	struct set_state_cover *c = cover();

	if (link && c && c->prog_id && BPF_CORE_READ(link, prog, aux, id) == c->prog_id)
		c->active = (__u64)BPF_CORE_READ(link, prog, active);
	return 0;
}

/* Run once by the runner: records the raw addresses of set_state_covered's
 * per-CPU storage and of set_state_cover's entry. */
SEC("iter/bpf_map")
int pt_find_maps(struct bpf_iter__bpf_map *ctx)
{
	struct bpf_map *map = ctx->map;
	struct set_state_cover *c = cover();
	__u32 id;

	if (!map || !c)
		return 0;
	id = BPF_CORE_READ(map, id);
	if (id == c->self_id)
		c->self_addr = (__u64)map + bpf_core_field_offset(struct bpf_array, value);
	else if (id == c->covered_id)
		c->covered_pptr = (__u64)BPF_CORE_READ((struct bpf_array *)map, pptrs[0]);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
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
	flush_connect_sk(s, &t);
	emit_conn(PT_RETRANSMIT, &t, s, inum, sk->__sk_common.skc_state);
	return 0;
}

/* A SYN|ACK sent again (its timer, or the client's SYN again): the
 * listener's request socket, whose sock_common holds the connection, in
 * state NEW_SYN_RECV; reported as SYN_RECV, the TCP state ss shows. */
SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(pt_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct sk_tuple t = {};
	__u32 inum;

	inum = sk_netns(sk);
	if (!netns_in_scope(inum) || !read_sk_tuple((const struct sock *)&req->__req_common, &t))
		return 0;
	if (should_discard(&t.local, t.lport, &t.remote, t.rport))
		return 0;
	struct pt_sock passive = {}; /* active = 0: this side accepts */

	emit_conn(PT_RETRANSMIT, &t, &passive, inum, PT_TCP_SYN_RECV);
	return 0;
}

/* An error reported on a socket (fires only then). A connect()ing socket
 * keeps it: its caller may take it with SO_ERROR, which clears it, before
 * the socket closes, and the close reports it. An ICMP error that comes
 * while connect() holds the socket is queued (the report is for that)
 * before the kernel sets sk_err_soft: then it is read from the queue. */
SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(pt_error_report, const struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct pt_sock *s;
	__u32 err;

	if (sk->__sk_common.skc_state != PT_TCP_SYN_SENT)
		return 0;
	err = sk->sk_err;
	if (!err)
		err = sk->sk_err_soft;
	if (!err && sk->sk_error_queue.qlen) {
		struct sk_buff *last = sk->sk_error_queue.prev;
		struct sock_exterr_skb *serr = (void *)last->cb;
		__u8 origin = BPF_CORE_READ(serr, ee.ee_origin);

		if (origin == PT_SO_EE_ORIGIN_ICMP || origin == PT_SO_EE_ORIGIN_ICMP6)
			err = BPF_CORE_READ(serr, ee.ee_errno);
	}
	if (!err)
		return 0;
	s = bpf_map_lookup_elem(&socks, &key);
	if (s)
		s->err = err;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
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

	flush_connect_sk(s, &t);
	emit_conn(PT_RESET_RECEIVED, &t, s, inum, 0);
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
	__u8 tcp_flags;
};

/* Reads a packet's headers from an skb seen at a tracepoint (its network
 * header set). IPv6 extension headers are not followed. */
static __always_inline bool read_skb_pkt(const struct sk_buff *skb, struct pkt *pk)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u16 nh = BPF_CORE_READ(skb, network_header);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	__u8 th[14] = {}; /* ports; TCP: the flags byte at offset 13 */
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
	if (bpf_probe_read_kernel(th, pk->proto == IPPROTO_TCP ? sizeof(th) : 4, head + l4))
		return false;
	pk->sport = bpf_ntohs(*(__be16 *)&th[0]);
	pk->dport = bpf_ntohs(*(__be16 *)&th[2]);
	pk->tcp_flags = th[13];
	return true;
}

SEC("tp_btf/tcp_send_reset")
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

static __always_inline bool ignored_drop_reason(__u32 reason)
{
#pragma unroll
	for (int i = 0; i < PT_MAX_IGNORED_DROP_REASONS; i++) {
		if (ignored_drop_reasons[i] && ignored_drop_reasons[i] == reason)
			return true;
	}
	return false;
}

/*
 * drop_buf: per CPU, where a drop event with its packet's bytes is put
 * together before bpf_ringbuf_output copies just its length into `events`
 * (as packet_buf in packets.bpf.c). Written by pt_kfree_skb, which does
 * not nest on a CPU (the kernel skips a raw tracepoint program's nested
 * runs: see recursion.rs); used only when `snaplen` is set. Never deleted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_packet);
} drop_buf SEC(".maps");

/* Copies the start of a dropped packet into pkt->data as a frame, and
 * returns its length: an Ethernet header of our own (zero addresses: the
 * packet may never have had one, or had it pulled off already), then the
 * IP packet of `ip_len` bytes, from the skb's linear part only (what lies
 * past it in memory is not the packet). */
static __always_inline __u32 copy_dropped(const struct sk_buff *skb, struct pt_packet *pkt,
					  __u32 ip_len)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	__u32 nh = BPF_CORE_READ(skb, network_header);
	__u32 tail = BPF_CORE_READ(skb, tail);
	__be16 proto = BPF_CORE_READ(skb, protocol);
	__u32 n = snaplen > ETH_HLEN ? snaplen - ETH_HLEN : 0;

	if (n > ip_len)
		n = ip_len;
	if (tail <= nh)
		n = 0;
	else if (n > tail - nh)
		n = tail - nh;
	if (n > PT_MAX_SNAPLEN - ETH_HLEN)
		n = PT_MAX_SNAPLEN - ETH_HLEN;
	__builtin_memset(pkt->data, 0, 12);
	__builtin_memcpy(&pkt->data[12], &proto, sizeof(proto));
	if (n) {
		/* Bounds the verifier can see on every kernel (see
		 * packets.bpf.c): 1 + a masked value, within the buffer. */
		__u32 m = (n - 1) & (PT_MAX_SNAPLEN - 1);

		if (m > PT_MAX_SNAPLEN - ETH_HLEN - 1)
			m = PT_MAX_SNAPLEN - ETH_HLEN - 1;
		if (bpf_probe_read_kernel(&pkt->data[ETH_HLEN], m + 1, head + nh))
			n = 0;
	}
	return ETH_HLEN + n;
}

static __always_inline void handle_kfree_skb(struct sk_buff *skb, int reason)
{
	struct net_device *dev = BPF_CORE_READ(skb, dev);
	struct pkt pk = {};
	__u32 inum;
	bool fwd = false, created = false;

	if (ignored_drop_reason(reason))
		return;
	if ((__u32)reason == unnamed_purge_reason) {
		struct sock *sk = BPF_CORE_READ(skb, sk);

		/* Still owned by a closed socket: its queue freed with it. */
		if (sk && (BPF_CORE_READ(sk, __sk_common.skc_flags) & (1UL << PT_SOCK_DEAD)))
			return;
	}
	/* The namespace of the device it was on, else of its socket. */
	if (dev)
		inum = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	else
		inum = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	if (!netns_in_scope(inum) || !read_skb_pkt(skb, &pk))
		return;
	if (should_discard(&pk.src, pk.sport, &pk.dst, pk.dport))
		return;

	/* A connect()ing socket's SYN, dropped before any tc program saw it:
	 * its connect event first. */
	if (pk.proto == IPPROTO_TCP)
		flush_connect_of((__u64)BPF_CORE_READ(skb, sk), pk.tcp_flags, &pk.src, pk.sport,
				 &pk.dst, pk.dport);

	struct pt_flow_stats *st =
		flow_of(&pk.src, pk.sport, &pk.dst, pk.dport, pk.proto, -1, &fwd, &created);
	if (st)
		__sync_fetch_and_add(&st->drops, 1);

	struct pt_event *e = begin_event(&drop_buf);

	if (!e)
		return;
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
	if (!snaplen) {
		submit_event(e);
		return;
	}
	send_packet(e, copy_dropped(skb, (struct pt_packet *)e, pk.len));
}

SEC("raw_tp/kfree_skb")
int BPF_PROG(pt_kfree_skb, struct sk_buff *skb, void *location, int reason)
{
	handle_kfree_skb(skb, reason);
	return 0;
}

/* Before Linux 5.17 kfree_skb has no reason argument, and the kernel
 * refuses to attach a raw tracepoint program that reads past the
 * arguments (EINVAL): the runner loads this one instead, and drops carry
 * no reason (0). */
SEC("raw_tp/kfree_skb")
int BPF_PROG(pt_kfree_skb_no_reason, struct sk_buff *skb, void *location)
{
	handle_kfree_skb(skb, 0);
	return 0;
}
