/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kernel.h - the few kernel-internal types podtrace reads, declared with
 * preserve_access_index so every field access is a CO-RE relocation
 * resolved against the running kernel's BTF at load time. Only the fields
 * we use are listed; their offsets here mean nothing. This replaces a
 * multi-megabyte generated vmlinux.h.
 */
#ifndef __PODTRACE_KERNEL_H
#define __PODTRACE_KERNEL_H

#include <linux/types.h>
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>

#define __pai __attribute__((preserve_access_index))

struct ns_common {
	unsigned int inum;
} __pai;

struct net {
	struct ns_common ns;
} __pai;

typedef struct {
	struct net *net;
} __pai possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	unsigned long skc_flags;	/* struct sock's sk_flags */
} __pai;

struct sk_buff;

struct sk_buff_head {
	struct sk_buff *prev;
	__u32 qlen;
} __pai;

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	int sk_err_soft;
	struct sk_buff_head sk_error_queue;
	__u16 sk_protocol;
} __pai;

/* An error queued on a socket (MSG_ERRQUEUE), in its skb's cb. */
struct sock_extended_err {
	__u32 ee_errno;
	__u8 ee_origin;
} __pai;

struct sock_exterr_skb {
	struct sock_extended_err ee;
} __pai;

#define PT_SO_EE_ORIGIN_ICMP 2
#define PT_SO_EE_ORIGIN_ICMP6 3

/* A listener's half-open connection: only its sock_common is read. */
struct request_sock {
	struct sock_common __req_common;
} __pai;

/* enum sock_flags' first member, 0 in every kernel: the socket is closed. */
#define PT_SOCK_DEAD 0

/* inet_sport stays set after close, unlike skc_num (zeroed on unhash). */
struct inet_sock {
	__be16 inet_sport;
} __pai;

struct tcp_sock {
	__u32 srtt_us;
	__u64 bytes_received;
	__u64 bytes_acked;
} __pai;

struct net_device {
	int ifindex;
	possible_net_t nd_net;
} __pai;

struct sk_buff {
	char cb[48];
	struct net_device *dev;
	struct sock *sk;
	unsigned char *head;
	__u32 tail; /* sk_buff_data_t: an offset from head on 64-bit kernels */
	__u16 network_header;
	__be16 protocol;
} __pai;

/* Enough of BPF's own structures to find a program's per-CPU recursion
 * count (`active`, Linux >= 5.12) through the bpf_link and bpf_map
 * iterators. */
struct bpf_prog_aux {
	__u32 id;
} __pai;

struct bpf_prog {
	int *active; /* __percpu */
	struct bpf_prog_aux *aux;
} __pai;

struct bpf_link {
	struct bpf_prog *prog;
} __pai;

struct bpf_iter_meta;

/* Any kernel struct with an int at offset 0 will do to read one int at a
 * raw address through bpf_core_cast (a plain load the verifier guards,
 * cheaper than bpf_probe_read_kernel). */
typedef struct {
	int counter;
} atomic_t;

struct refcount_struct {
	atomic_t refs;
} __pai;

struct bpf_map {
	__u32 id;
} __pai;

/* Array maps: values inline, per-CPU arrays: one per-CPU pointer each. */
struct bpf_array {
	union {
		char value[0];
		void *pptrs[0];
	};
} __pai;

struct bpf_iter__bpf_map {
	struct bpf_iter_meta *meta;
	struct bpf_map *map;
} __pai;

struct bpf_iter__bpf_link {
	struct bpf_iter_meta *meta;
	struct bpf_link *link;
} __pai;

#define PT_AF_INET 2
#define PT_AF_INET6 10

#endif /* __PODTRACE_KERNEL_H */
