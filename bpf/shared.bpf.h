/* SPDX-License-Identifier: GPL-2.0 */
/*
 * shared.bpf.h - what both BPF objects use: the filters, the maps they
 * share and the helpers around them. Included once by podtrace.bpf.c (the
 * socket tracepoints and drops) and once by packets.bpf.c (the tc
 * programs). They are two objects so the runner can load them at the
 * same time and attach the packet programs (tcx: one RCU grace period per
 * link) while the kernel still verifies the tracepoint programs. The runner
 * creates the maps below once, from the tracepoint object's definitions,
 * and hands their fds to both objects before load (libbpf map reuse), so
 * both see the same maps.
 */
#ifndef __PODTRACE_SHARED_BPF_H
#define __PODTRACE_SHARED_BPF_H

/* Filters, set by the runner before load; zero means "no filter". */
const volatile __u8 filter_peers = 0; /* only traffic with peer_ips */
const volatile __u8 filter_ports = 0; /* only traffic with one of `ports` */
const volatile __u8 single_pod = 0;   /* pod_ips holds exactly one address: */
/* this one (compared, not looked up), as the two halves of its pt_ip */
const volatile __u64 the_pod[2] = {};
/* Wake the reader only once this much is queued; below it the runner's
 * periodic poll picks events up (so latency is bounded by its interval).
 * Set by the runner to a fraction of the ring buffer's size. */
const volatile __u32 wakeup_bytes = PT_RINGBUF_BYTES / 8;
/* Bytes of each reported packet and dropped packet (from the Ethernet
 * header) copied into its event, at most PT_MAX_SNAPLEN; 0: none, and the
 * copying code is dead. */
const volatile __u32 snaplen = 0;

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
 * socks: sockets connect()ed while tracing, keyed by struct sock address,
 * for the caller's pid/comm, the open time, the orientation and the
 * connect event they still owe.
 * Inserted by pt_set_state on SYN_SENT; deleted by pt_set_state on CLOSE;
 * `connect_pending` cleared by whichever program sees the socket's port
 * first (the tc program its SYN passes, pt_kfree_skb if the SYN is
 * dropped before, else a later state change or retransmit); `err` written
 * by pt_error_report. LRU evicts sockets whose CLOSE we never saw.
 * Accepted sockets are not kept here: their state changes run in the
 * softirq that also feeds the listener, where an LRU insert and delete per
 * connection cost the most; the runner matches their later events to the
 * `accept` event instead (orientation, duration).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PT_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct pt_sock);
} socks SEC(".maps");

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
 * lost: per CPU, events dropped because the ring buffer was full, and
 * events submitted since this CPU last checked the ring's fill level.
 * Updated by reserve_event() and submit_event() on their own CPU; `lost`
 * is read (never reset) by the runner, which reports the growth as `lost`
 * lines.
 */
struct pt_cpu_events {
	__u64 lost;
	__u64 unchecked;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pt_cpu_events);
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
	/* Two 8-byte compares instead of hashing 16 bytes into a map: the
	 * common case, one traced pod on the node, on every packet. */
	if (single_pod) {
		__u64 a[2];

		__builtin_memcpy(a, ip->addr, sizeof(a));
		return a[0] == the_pod[0] && a[1] == the_pod[1];
	}
	return in_set(&pod_ips, ip);
}

/*
 * The one filter every program applies: true when traffic between a:aport
 * and b:bport is none of our business. One side must be a traced pod; with
 * --peer-ip the other side must be a peer (or another traced pod); with
 * --port one of the ports must be listed. Sets *a_pod to whether `a` is a
 * traced pod (callers that need it pass the likelier pod side as `a`): it
 * is looked up first, and `b` only when that is still needed.
 */
static __always_inline bool should_discard_pod(const struct pt_ip *a, __u16 aport,
					       const struct pt_ip *b, __u16 bport, bool *a_pod)
{
	bool ap = is_pod_ip(a), bp = false;

	*a_pod = ap;
	if (!ap || filter_peers)
		bp = is_pod_ip(b);
	if (!ap && !bp)
		return true;
	if (filter_peers) {
		bool ok = (ap && (bp || in_set(&peer_ips, b))) || (bp && in_set(&peer_ips, a));
		if (!ok)
			return true;
	}
	if (filter_ports && !in_set(&ports, &aport) && !in_set(&ports, &bport))
		return true;
	return false;
}

static __always_inline bool should_discard(const struct pt_ip *a, __u16 aport,
					   const struct pt_ip *b, __u16 bport)
{
	bool a_pod;

	return should_discard_pod(a, aport, b, bport, &a_pod);
}

/* One more event the ring buffer had no room for, on this CPU. */
static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	struct pt_cpu_events *c = bpf_map_lookup_elem(&lost, &zero);

	if (c)
		c->lost += 1;
}

static __always_inline struct pt_event *reserve_event(void)
{
	struct pt_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_lost();
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

/* Each CPU looks at the ring's fill level once per this many events:
 * the look is dear under load (it reads positions the other CPUs and the
 * reader keep writing), and missing the threshold by at
 * most this many events per CPU does not matter against wakeup_bytes. */
#define PT_CHECK_FILL_EVERY 32

/* The flags to hand the ring buffer with an event. */
static __always_inline __u64 wakeup_flags(void)
{
	/* Batch wake-ups: the runner polls on a short timer anyway, so only
	 * a filling buffer is worth an immediate wake-up. */
	__u32 zero = 0;
	struct pt_cpu_events *c = bpf_map_lookup_elem(&lost, &zero);

	if (!c || ++c->unchecked >= PT_CHECK_FILL_EVERY) {
		if (c)
			c->unchecked = 0;
		if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
			return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void submit_event(struct pt_event *e)
{
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* Copies the first `size` bytes of `rec` into the ring as one event: for
 * records whose length is only known at run time (reserve_event's is
 * fixed at compile time). */
static __always_inline void output_event(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flags()))
		count_lost();
}

/* The event of this CPU's pt_packet in `buf` (a per-CPU map of one),
 * zeroed and timed, to fill in and send with send_packet(); NULL if none. */
static __always_inline struct pt_event *begin_bytes_event(void *buf)
{
	__u32 zero = 0;
	struct pt_packet *pkt = bpf_map_lookup_elem(buf, &zero);

	if (!pkt)
		return NULL;
	__builtin_memset(&pkt->ev, 0, sizeof(pkt->ev));
	pkt->ev.ts_ns = bpf_ktime_get_ns();
	return &pkt->ev;
}

/* An event that may carry packet bytes, to fill in. With bytes asked for
 * (`snaplen`), begin_bytes_event()'s, to be sent with send_packet(); else
 * reserved in the ring, for submit_event(). NULL when there is no room.
 * Callers test `snaplen`, not the pointer, to tell which: the verifier
 * knows it and drops the other way, so without bytes the code is what it
 * was before they existed. */
static __always_inline struct pt_event *begin_event(void *buf)
{
	if (!snaplen)
		return reserve_event();
	return begin_bytes_event(buf);
}

/* Sends a begin_event() event that carries bytes (`ev` is the first
 * member of its pt_packet) with `caplen` bytes of its packet. */
static __always_inline void send_packet(struct pt_event *e, __u32 caplen)
{
	struct pt_packet *pkt = (struct pt_packet *)e;

	pkt->caplen = caplen;
	output_event(pkt, __builtin_offsetof(struct pt_packet, data) + caplen);
}

/* Writes the connect event socket `s` still owes, now that its port is
 * known: local:lport -> remote:rport, timed when connect() happened. The
 * first program that sees the port does it, so the event comes before
 * anything else reported of the connection. No atomics (BPF's exchange
 * needs Linux 5.12): two programs would have to see the same socket's
 * first packet at once, and its SYN is sent once before anything else. */
static __always_inline void flush_connect(struct pt_sock *s, const struct pt_ip *local, __u16 lport,
					  const struct pt_ip *remote, __u16 rport)
{
	struct pt_event *e;

	if (!s || !s->connect_pending || !lport)
		return;
	s->connect_pending = 0;
	e = reserve_event();
	if (!e)
		return;
	e->kind = PT_CONNECT;
	e->ts_ns = s->start_ns;
	e->oriented = 1;
	e->by_opener = 1;
	e->saddr = *local;
	e->sport = lport;
	e->daddr = *remote;
	e->dport = rport;
	e->proto = IPPROTO_TCP;
	e->netns = s->netns;
	e->pid = s->pid;
	e->has_pid = s->has_pid;
	__builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
	submit_event(e);
}

/* The connect event owed by the socket that sent a packet (skb->sk), if it
 * owes one and the packet is its SYN src:sport -> dst:dport. Only the
 * socket's address is used, as a key: never dereferenced. */
static __always_inline void flush_connect_of(__u64 sk, __u8 tcp_flags, const struct pt_ip *src,
					     __u16 sport, const struct pt_ip *dst, __u16 dport)
{
	if (!sk || (tcp_flags & (PT_TCP_SYN | PT_TCP_ACK)) != PT_TCP_SYN)
		return;
	flush_connect(bpf_map_lookup_elem(&socks, &sk), src, sport, dst, dport);
}

/* The key of the flow of a packet a:aport -> b:bport, `a_opens` telling
 * which side opened it. */
static __always_inline void flow_key(struct pt_flow_key *k, const struct pt_ip *a, __u16 aport,
				     const struct pt_ip *b, __u16 bport, __u8 proto, bool a_opens)
{
	k->proto = proto;
	k->pad = 0;
	if (a_opens) {
		k->client = *a;
		k->server = *b;
		k->server_port = bport;
	} else {
		k->client = *b;
		k->server = *a;
		k->server_port = aport;
	}
}

/* Finds the flow a packet a:aport -> b:bport belongs to, creating it when
 * missing (the opener is guessed from `syn_ack`/ports when not known).
 * Sets *forward when the packet goes client -> server. The likelier
 * orientation is looked up first, so most packets cost one lookup. */
static __always_inline struct pt_flow_stats *flow_of(const struct pt_ip *a, __u16 aport,
						     const struct pt_ip *b, __u16 bport, __u8 proto,
						     int opener_is_a, bool *forward, bool *created)
{
	struct pt_flow_key k = {};
	struct pt_flow_stats *st;
	bool guess = opener_is_a < 0 ? aport >= bport : opener_is_a;

#pragma unroll
	for (int i = 0; i < 2; i++) {
		bool a_opens = i == 0 ? guess : !guess;

		flow_key(&k, a, aport, b, bport, proto, a_opens);
		st = bpf_map_lookup_elem(&flows, &k);
		if (st) {
			*forward = a_opens;
			return st;
		}
	}
	/* Not found: create it the way we guessed. */
	*forward = guess;
	flow_key(&k, a, aport, b, bport, proto, guess);
	struct pt_flow_stats zero = {};

	/* NOEXIST: another CPU may have created it meanwhile; use theirs. */
	if (!bpf_map_update_elem(&flows, &k, &zero, BPF_NOEXIST))
		*created = true;
	return bpf_map_lookup_elem(&flows, &k);
}

#endif /* __PODTRACE_SHARED_BPF_H */
