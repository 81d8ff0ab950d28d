"""pflowbsd.export.ipfix: templates in the kernel's order, record layouts, times, sizing."""

import socket
import struct

import pytest

from pflowbsd.export import ipfix
from pflowbsd.flows import Clock, Flow

A4, B4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
N4 = bytes([203, 0, 113, 9])
A6, B6 = socket.inet_pton(socket.AF_INET6, "2001:db8::1"), socket.inet_pton(socket.AF_INET6, "2001:db8::2")
N6 = socket.inet_pton(socket.AF_INET6, "2001:db8:ffff::9")
NOW = Clock(wall=1_700_000_000.75, up=3_600.5)


def flow4(**kw):
    base = dict(af=socket.AF_INET, src=A4, dst=B4, src_port=40001, dst_port=443, proto=6,
                packets=10, octets=1000, start=3_000_000, end=3_590_000)  # fmt: skip
    base.update(kw)
    return Flow(**base)


def flow6(**kw):
    return flow4(af=socket.AF_INET6, src=A6, dst=B6, **kw)


# if_pflow.c pflow_clone_create, template field by field (IE ids), in order
KERNEL_V4 = [8, 12, 10, 14, 2, 1, 152, 153, 7, 11, 5, 4]
KERNEL_V6 = [27, 28, 10, 14, 2, 1, 152, 153, 7, 11, 5, 4]
# pflow-semantics.md 3.3 (the Nov 2025 NAT template), and its IPv6 analogue
NAT_V4 = [8, 12, 10, 14, 2, 1, 152, 153, 225, 226, 227, 228, 7, 11, 5, 4]
NAT_V6 = [27, 28, 10, 14, 2, 1, 152, 153, 281, 282, 227, 228, 7, 11, 5, 4]


@pytest.mark.parametrize(
    "tid,ies,size",
    [(256, KERNEL_V4, 54), (257, KERNEL_V6, 78), (258, NAT_V4, 66), (259, NAT_V6, 114)],
)
def test_template_fields_and_record_sizes(tid, ies, size):
    t = ipfix.TEMPLATES[tid]
    assert [ie for ie, _ in t.fields] == ies
    assert t.layout.size == size == sum(length for _, length in t.fields)


def test_template_set_for_the_plain_templates_is_the_kernels_108_bytes():
    data = ipfix.template_set([256, 257])
    assert len(data) == 108
    assert struct.unpack("!HH", data[:4]) == (2, 108)
    assert struct.unpack("!HH", data[4:8]) == (256, 12)
    specs = struct.unpack("!24H", data[8:56])
    assert list(specs[0::2]) == KERNEL_V4
    assert list(specs[1::2]) == [4, 4, 4, 4, 8, 8, 8, 8, 2, 2, 1, 1]
    assert struct.unpack("!HH", data[56:60]) == (257, 12)
    specs6 = struct.unpack("!24H", data[60:108])
    assert list(specs6[1::2]) == [16, 16, 4, 4, 8, 8, 8, 8, 2, 2, 1, 1]


def test_template_set_with_nat():
    data = ipfix.template_set([256, 257, 258, 259])
    assert len(data) == 4 + 52 + 52 + 68 + 68


def test_routes_by_family_and_translation():
    assert ipfix.TEMPLATE_FOR == {
        (socket.AF_INET, False): 256,
        (socket.AF_INET6, False): 257,
        (socket.AF_INET, True): 258,
        (socket.AF_INET6, True): 259,
    }


@pytest.mark.parametrize("tid,mtu,want", [(256, 1500, 26), (257, 1500, 18), (258, 1500, 22), (259, 1500, 12),
                                          (256, 2048, 30), (257, 2048, 25), (256, 72, 0), (256, 98, 1)])  # fmt: skip
def test_maxcount(tid, mtu, want):
    assert ipfix.maxcount(tid, mtu) == want


def test_flow_millis_is_epoch_ms_in_whole_seconds():
    # boot was at 1_700_000_000 - 3_600 (whole seconds); start 3000 s, end 3590 s after
    start, end = ipfix.flow_millis(flow4(start=3_000_999, end=3_590_000), NOW)
    assert start == (1_700_000_000 - 3_600 + 3_000) * 1000
    assert end == (1_700_000_000 - 3_600 + 3_590) * 1000


def test_flow_millis_creation_after_expire_is_boot_time():
    start, end = ipfix.flow_millis(flow4(start=3_595_000, end=3_590_000), NOW)
    assert start == (1_700_000_000 - 3_600) * 1000
    assert end == (1_700_000_000 - 10) * 1000


def test_flow_millis_has_no_negative_guard():
    start, _ = ipfix.flow_millis(flow4(start=-5_000, end=1_000), NOW)
    assert start == (1_700_000_000 - 3_600 - 5) * 1000


def test_plain_v4_record():
    rec = ipfix.TEMPLATES[256].pack(flow4(packets=2**40 + 1, octets=2**50 + 3, if_in=7, if_out=70000, tos=0x10), NOW)
    v = ipfix.FLOW4.unpack(rec)
    assert v == (A4, B4, 7, 70000, 2**40 + 1, 2**50 + 3, (1_700_000_000 - 600) * 1000,
                 (1_700_000_000 - 10) * 1000, 40001, 443, 0x10, 6)  # fmt: skip


def test_plain_v6_record():
    v = ipfix.FLOW6.unpack(ipfix.TEMPLATES[257].pack(flow6(proto=17), NOW))
    assert v[:2] == (A6, B6) and v[-4:] == (40001, 443, 0, 17)


def test_nat_v4_record_carries_both_keys():
    f = flow4(nat_src=N4, nat_dst=B4, nat_src_port=61000, nat_dst_port=443)
    v = ipfix.FLOW4_NAT.unpack(ipfix.TEMPLATES[258].pack(f, NOW))
    assert v[:2] == (A4, B4)
    assert v[8:12] == (N4, B4, 61000, 443)
    assert v[12:] == (40001, 443, 0, 6)


def test_nat_v6_record_carries_both_keys():
    f = flow6(nat_src=N6, nat_dst=B6, nat_src_port=61000, nat_dst_port=443)
    v = ipfix.FLOW6_NAT.unpack(ipfix.TEMPLATES[259].pack(f, NOW))
    assert v[8:12] == (N6, B6, 61000, 443)


def test_message_header():
    data = ipfix.message(ipfix.data_set(256, [b"x" * 54] * 2), NOW, 2**32 + 9, 42)
    assert ipfix.HEADER.unpack(data[:16]) == (10, 16 + 4 + 108, 1_700_000_000, 9, 42)
    assert ipfix.SET_HEADER.unpack(data[16:20]) == (256, 112)
    assert len(data) == 128
