"""pflow(4)'s constants, defined once and named as the kernel names them.

From OpenBSD's sys/net/if_pflow.h, except where a comment says where else; each line can
be held against its #define.  The wire layouts are not here (v5.py and ipfix.py declare
them); PFLOW_MINMTU, which if_pflow.c derives from two of them, is checked in v5.py.
"""

from __future__ import annotations

PFLOW_MAXFLOWS = 30  # records a datagram carries at the most
PFLOW_ENGINE_TYPE = 42  # v5 engine_type; also the IPFIX observation_dom pflow_sendout_ipfix writes
PFLOW_ENGINE_ID = 42  # v5 engine_id
PFLOW_MAXBYTES = 0xFFFFFFFF  # export_pflow_if splits a v5 counter above it
PFLOW_TIMEOUT = 30  # seconds a buffer is held after its first record
PFLOW_TMPL_TIMEOUT = 30  # seconds between IPFIX templates; rfc 5101 10.3.6 (p.40) recommends 600

PFLOW_IPFIX_TMPL_SET_ID = 2
PFLOW_IPFIX_TMPL_IPV4_ID = 256
PFLOW_IPFIX_TMPL_IPV6_ID = 257

PFLOW_PROTO_5 = 5  # pflowproto, and the version field of the header it sends
PFLOW_PROTO_10 = 10  # IPFIX
PFLOW_PROTO_DEFAULT = PFLOW_PROTO_5

# if_pflow.c: sizeof(struct pflow_header) + sizeof(struct pflow_flow); pflowioctl refuses
# a smaller SIOCSIFMTU with EINVAL
PFLOW_MINMTU = 24 + 48

# Defined elsewhere in the kernel, used by if_pflow.c as follows.
MCLBYTES = 2048  # sys/param.h: pflowioctl clamps a larger SIOCSIFMTU to it
ETHERMTU = 1500  # netinet/if_ether.h: the MTU pflow_clone_create starts with
UDPIP_HDRLEN = 28  # sizeof(struct udpiphdr), netinet/udp_var.h: pflow_setmtu/pflow_calc_mtu take it off

# htonl() and htobe64() keep the low 32 or 64 bits of a wider value; these masks do it here.
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
