#!/usr/bin/env python3
"""The specmirror target behind a 1 GbE MAC and UDP/IP stack on the Lattice ECP5-5G Versa board
(LFE5UM5G-45F), no CPU: RGMII PHY -> LiteEth UDP/IP with a 64-bit datapath on the system clock ->
the `target_path` Verilog generated from hdl/ on one UDP port, its volume-write port into a 64 KiB
volume in block RAM. Each datagram to that port is one protocol frame; every LOCK is answered with
LOCK_GRANTED or LOCK_REJECTED, every write with WRITE_DONE once it is in the volume, to the address
and port the last frame came from. The board answers ARP and ping.

The receive side is never back-pressured: the lock path takes a word every clock, so an answer
waiting for ARP can never hold up the ARP reply behind it. Answers wait in a FIFO in front of the
UDP transmit port instead.

On a real NIC the host sets the session's generation, the volume's geometry and the retry
parameters through the register block, answers the handshake and flushes, and writes the volume
from the write port; this board build ties the parameters to constants and keeps the volume on
chip (writes at 8-byte aligned offsets; others fail with EINVAL), so it shows the datapath, its
size and its timing, not a whole target.

The same datapath, with LiteEth's PHY model in place of the RGMII PHY, is what the Verilator
simulation of the NIC runs (`--sim-verilog`): there the volume-write and completion ports, the
parameters and a host path (every datagram to the port copied out, datagrams from the host's
software sent) are ports of the module `nic_sim`, and the harness plays the volume and the host.

    python nic.py --verilog DIR/target_path.v --output-dir OUT [--sys-clk-freq 75e6] [--build]
    python nic.py --sim-verilog OUT/nic_sim.v
"""

import argparse
import os

from migen import *
from migen.genlib.resetsync import AsyncResetSynchronizer

from litex.gen.reduce import Reduce

from litex.gen import LiteXModule
from litex.build.generic_platform import *
from litex.soc.cores.clock import ECP5PLL
from litex.soc.integration.soc_core import SoCMini
from litex.soc.integration.builder import Builder
from litex.soc.interconnect import stream

from litex_boards.platforms import lattice_versa_ecp5

from liteeth.common import eth_udp_user_description
from liteeth.phy.ecp5rgmii import LiteEthPHYRGMII
from liteeth.phy.model import LiteEthPHYModel
from liteeth.core import LiteEthUDPIPCore
from litex.soc.interconnect.packet import Arbiter

UDP_PORT = 7800
FRAME_BYTES = 72  # a control frame: 64-byte header and the 8-byte CRC trailer
VOLUME_BYTES = 64 * 1024
REGION_SHIFT = 12
EINVAL = 22
MAC_ADDRESS = 0x10E2D5000050
IP_ADDRESS = "192.168.1.50"

# The target path's parameters: (name, bits). The board ties them to constants; the simulation
# makes each a port the harness sets, as a host sets them through the register block.
PARAMETERS = [
    ("generation", 32),
    ("region_count", 32),
    ("retry_backoff", 16),
    ("retry_limit", 16),
    ("local_hold", 1),
    ("local_first", 32),
    ("local_end", 32),
    ("clear_barriers", 1),
    ("region_shift", 8),
    ("volume_bytes", 64),
    ("data_timeout", 32),
    ("grant_timeout", 32),
]
# The target path's counters a harness reads: (name, bits).
COUNTERS = [
    ("held", 16),
    ("frames_bad", 32),
    ("lock_drops", 32),
    ("answer_drops", 32),
    ("data_drops", 32),
    ("stale", 32),
]


class _CRG(LiteXModule):
    def __init__(self, platform, sys_clk_freq):
        self.cd_sys = ClockDomain()
        clk100 = platform.request("clk100")
        rst_n = platform.request("rst_n")
        self.pll = pll = ECP5PLL()
        self.comb += pll.reset.eq(~rst_n)
        pll.register_clkin(clk100, 100e6)
        # The system domain comes out of reset, synchronously, once the PLL has locked.
        pll.create_clkout(self.cd_sys, sys_clk_freq, with_reset=False)
        self.specials += AsyncResetSynchronizer(self.cd_sys, ~pll.locked | ~rst_n)


def udp_ip_core(phy, sys_clk_freq):
    """LiteEth's MAC, ARP, IPv4, ICMP and UDP with a 64-bit datapath on the system clock."""
    return LiteEthUDPIPCore(
        phy,
        mac_address=MAC_ADDRESS,
        ip_address=IP_ADDRESS,
        clk_freq=sys_clk_freq,
        dw=64,
        with_sys_datapath=True,
        # Only IP packets to this address: LiteEth's MAC takes frames to any MAC address.
        with_ip_broadcast=False,
    )


class TargetPort(LiteXModule):
    """The target path (`target_path`, Verilog from hdl/) on UDP port UDP_PORT of a LiteEth
    UDP/IP core. `params` maps each of PARAMETERS to a constant or a signal. The volume-write
    port (wr_*) and the completion port (done_*) are left to the caller, as are the counters.
    With `with_host`, every datagram to the port is also copied out on `host_rx` (never stalled)
    and datagrams from the host's software on `host_tx` share the transmit port with the answers.

    The receive side is never back-pressured: the target path takes a word every clock, so an
    answer waiting for ARP can never hold up the ARP reply behind it. Answers wait in a FIFO in
    front of the UDP transmit port instead. With `check_fcs`, a datagram the MAC flagged (a bad
    Ethernet CRC) has a bit of its last word, the frame's CRC trailer, flipped on its way in, so
    the target path's own check drops it and counts it as a bad frame. The board build leaves
    the Ethernet CRC check out: on the 64-bit datapath LiteEth's checker (an engine for every
    length of the last word) multiplies synthesis time many times over, while the frame's own
    CRC32C already covers the protocol frame end to end and the IPv4 checksum its addresses."""

    def __init__(self, ethcore, params, with_host=False, check_fcs=False):
        port = ethcore.udp.crossbar.get_port(UDP_PORT, dw=64)
        rx, tx = port.source, port.sink

        # LiteEth's user port does not drive `first`, so the start of each datagram is tracked
        # here; the sender's address is latched there, and answers go back to the last sender.
        in_frame = Signal()
        peer_ip = Signal(32)
        peer_port = Signal(16)
        flagged = Signal()
        self.datagrams = Signal(32)
        self.flagged = Signal(32)
        self.comb += rx.ready.eq(1)
        if check_fcs:
            self.comb += flagged.eq(rx.last & (rx.error != 0))
        # The target path takes the stream a clock later, from registers: one bit of a flagged
        # frame's CRC field flipped. (Flipped combinationally, the MAC's CRC check and the target
        # path's CRC trees would be one logic cone, which slows synthesis down many times over.)
        rx_data, rx_valid, rx_last = Signal(64), Signal(), Signal()
        self.sync += [
            rx_data.eq(rx.data ^ flagged),
            rx_valid.eq(rx.valid),
            rx_last.eq(rx.last),
        ]
        self.sync += [
            If(rx.valid, in_frame.eq(~rx.last)),
            If(rx.valid & ~in_frame, peer_ip.eq(rx.ip_address), peer_port.eq(rx.src_port)),
            If(rx.valid & rx.last,
                self.datagrams.eq(self.datagrams + 1),
                If(flagged, self.flagged.eq(self.flagged + 1))),
        ]

        # Transmit: answers into a FIFO in front of the UDP port.
        self.answers = answers = stream.SyncFIFO(eth_udp_user_description(64), 64, buffered=True)
        a = answers.sink
        self.comb += [
            a.src_port.eq(UDP_PORT),
            a.dst_port.eq(peer_port),
            a.ip_address.eq(peer_ip),
            a.length.eq(FRAME_BYTES),
            a.last_be.eq(Mux(a.last, 0x80, 0)),
        ]
        if with_host:
            self.host_rx = host_rx = stream.Endpoint(eth_udp_user_description(64))
            self.host_tx = host_tx = stream.Endpoint(eth_udp_user_description(64))
            self.comb += [
                host_rx.valid.eq(rx.valid),
                host_rx.last.eq(rx.last),
                host_rx.data.eq(rx.data),
                host_rx.last_be.eq(rx.last_be),
                host_rx.error.eq(rx.error),
                host_rx.ip_address.eq(rx.ip_address),
                host_rx.src_port.eq(rx.src_port),
                host_rx.dst_port.eq(rx.dst_port),
                host_rx.length.eq(rx.length),
            ]
            self.arbiter = Arbiter([answers.source, host_tx], tx)
        else:
            self.comb += answers.source.connect(tx)

        self.wr_valid, self.wr_ready, self.wr_last, self.wr_fua = Signal(), Signal(), Signal(), Signal()
        self.wr_data, self.wr_offset, self.wr_len = Signal(64), Signal(64), Signal(32)
        self.wr_slot = Signal(4)
        self.done_valid, self.done_ready = Signal(), Signal()
        self.done_slot, self.done_error = Signal(4), Signal(32)
        self.counters = {name: Signal(bits) for name, bits in COUNTERS}
        self.specials += Instance(
            "target_path",
            i_clock=ClockSignal("sys"),
            i_rx_data=rx_data,
            i_rx_valid=rx_valid,
            i_rx_last=rx_last,
            o_tx_data=a.data,
            o_tx_valid=a.valid,
            o_tx_last=a.last,
            i_tx_ready=a.ready,
            o_wr_valid=self.wr_valid,
            i_wr_ready=self.wr_ready,
            o_wr_data=self.wr_data,
            o_wr_last=self.wr_last,
            o_wr_offset=self.wr_offset,
            o_wr_len=self.wr_len,
            o_wr_fua=self.wr_fua,
            o_wr_slot=self.wr_slot,
            i_done_valid=self.done_valid,
            o_done_ready=self.done_ready,
            i_done_slot=self.done_slot,
            i_done_error=self.done_error,
            **{f"i_{name}": params[name] for name, _ in PARAMETERS},
            **{f"o_{name}": sig for name, sig in self.counters.items()},
        )


class NIC(SoCMini):
    def __init__(self, verilog, sys_clk_freq):
        platform = lattice_versa_ecp5.Platform(toolchain="trellis", device="LFE5UM5G")
        self.crg = _CRG(platform, sys_clk_freq)
        SoCMini.__init__(self, platform, sys_clk_freq, ident="specmirror target lock path")

        self.ethphy = LiteEthPHYRGMII(
            clock_pads=platform.request("eth_clocks", 0),
            pads=platform.request("eth", 0),
            tx_delay=0e-9,
            rx_delay=0e-9,
        )
        self.ethcore = udp_ip_core(self.ethphy, sys_clk_freq)
        params = {
            "generation": 1,
            "region_count": VOLUME_BYTES >> REGION_SHIFT,
            "retry_backoff": 64,
            "retry_limit": 16,
            "local_hold": 0,
            "local_first": 0,
            "local_end": 0,
            "clear_barriers": 0,
            "region_shift": REGION_SHIFT,
            "volume_bytes": VOLUME_BYTES,
            "data_timeout": int(sys_clk_freq // 1000),
            "grant_timeout": int(sys_clk_freq),
        }
        platform.add_source(os.path.abspath(verilog))
        self.target = t = TargetPort(self.ethcore, params)

        # The volume: block RAM written a word per clock, bytes enabled for a short last word.
        # One write completes before the next is taken.
        volume = Memory(64, VOLUME_BYTES // 8)
        vport = volume.get_port(write_capable=True, we_granularity=8)
        # Something reads the volume (else synthesis drops it, and the data path with it): a scan
        # folds every word into one bit for an LED.
        scan = volume.get_port()
        self.specials += volume, vport, scan
        scan_fold = Signal()
        self.sync += [scan.adr.eq(scan.adr + 1), scan_fold.eq(scan_fold ^ Reduce("XOR", scan.dat_r))]
        index = Signal(13)
        aligned = Signal()
        last_mask = Array([0xFF, 0x01, 0x03, 0x07, 0x0F, 0x1F, 0x3F, 0x7F])
        self.comb += [
            aligned.eq(t.wr_offset[0:3] == 0),
            t.wr_ready.eq(~t.done_valid),
            vport.adr.eq(t.wr_offset[3:16] + index),
            vport.dat_w.eq(t.wr_data),
            If(t.wr_valid & t.wr_ready & aligned,
                vport.we.eq(Mux(t.wr_last, last_mask[t.wr_len[0:3]], 0xFF))),
        ]
        self.sync += [
            If(t.wr_valid & t.wr_ready,
                index.eq(index + 1),
                If(t.wr_last,
                    index.eq(0),
                    t.done_valid.eq(1),
                    t.done_slot.eq(t.wr_slot),
                    t.done_error.eq(Mux(aligned, 0, EINVAL)))),
            If(t.done_valid & t.done_ready, t.done_valid.eq(0)),
        ]
        held, frames_bad = t.counters["held"], t.counters["frames_bad"]
        # Something to look at on the board: locks held, a bad frame seen, the volume's fold.
        leds = platform.request_all("user_led")
        self.comb += leds.eq(~Cat(held[:6], scan_fold, frames_bad != 0))


class PHYModel(LiteEthPHYModel):
    """LiteEth's PHY model with the preamble and the Ethernet CRC kept, so the MAC inserts and
    checks them as it does behind a real PHY: the harness sends and takes whole Ethernet frames."""
    with_preamble_crc = True


class NICSim(LiteXModule):
    """The board's datapath for Verilator: the PHY model's byte streams, the volume-write and
    completion ports, the parameters, the host path and the counters are ports of `nic_sim`."""

    def __init__(self, sys_clk_freq):
        self.cd_sys = ClockDomain()
        self.ios = set()

        def port(name, bits=1):
            sig = Signal(bits, name_override=name)
            self.ios.add(sig)
            return sig

        clk, rst = port("clk"), port("rst")
        self.comb += [self.cd_sys.clk.eq(clk), self.cd_sys.rst.eq(rst)]
        pads = Record([("source_valid", 1), ("source_data", 8), ("sink_valid", 1), ("sink_data", 8)])
        self.ethphy = PHYModel(pads)
        self.ethcore = udp_ip_core(self.ethphy, sys_clk_freq)
        # Into the NIC (phy_rx_*) and out of it (phy_tx_*), a byte per clock; a frame is the
        # bytes of one run of valid clocks: preamble, Ethernet frame, CRC.
        self.comb += [
            pads.sink_valid.eq(port("phy_rx_valid")),
            pads.sink_data.eq(port("phy_rx_data", 8)),
            port("phy_tx_valid").eq(pads.source_valid),
            port("phy_tx_data", 8).eq(pads.source_data),
        ]
        params = {name: port(name, bits) for name, bits in PARAMETERS}
        self.target = t = TargetPort(self.ethcore, params, with_host=True, check_fcs=True)
        self.comb += [
            port("wr_valid").eq(t.wr_valid),
            t.wr_ready.eq(port("wr_ready")),
            port("wr_data", 64).eq(t.wr_data),
            port("wr_last").eq(t.wr_last),
            port("wr_offset", 64).eq(t.wr_offset),
            port("wr_len", 32).eq(t.wr_len),
            port("wr_fua").eq(t.wr_fua),
            port("wr_slot", 4).eq(t.wr_slot),
            t.done_valid.eq(port("done_valid")),
            port("done_ready").eq(t.done_ready),
            t.done_slot.eq(port("done_slot", 4)),
            t.done_error.eq(port("done_error", 32)),
            port("datagrams", 32).eq(t.datagrams),
            port("flagged", 32).eq(t.flagged),
        ]
        self.comb += [port(name, bits).eq(t.counters[name]) for name, bits in COUNTERS]
        hr, ht = t.host_rx, t.host_tx
        self.comb += [
            hr.ready.eq(1),
            port("host_rx_valid").eq(hr.valid),
            port("host_rx_last").eq(hr.last),
            port("host_rx_data", 64).eq(hr.data),
            port("host_rx_last_be", 8).eq(hr.last_be),
            port("host_rx_error").eq(hr.error != 0),
            port("host_rx_ip", 32).eq(hr.ip_address),
            port("host_rx_port", 16).eq(hr.src_port),
            ht.valid.eq(port("host_tx_valid")),
            port("host_tx_ready").eq(ht.ready),
            ht.last.eq(port("host_tx_last")),
            ht.data.eq(port("host_tx_data", 64)),
            ht.last_be.eq(port("host_tx_last_be", 8)),
            ht.length.eq(port("host_tx_length", 16)),
            ht.ip_address.eq(port("host_tx_ip", 32)),
            ht.dst_port.eq(port("host_tx_port", 16)),
            ht.src_port.eq(UDP_PORT),
        ]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verilog", help="target_path.v generated from hdl/ (board build)")
    p.add_argument("--output-dir", help="the board build's folder")
    p.add_argument("--sys-clk-freq", type=float, default=75e6)
    p.add_argument("--build", action="store_true", help="synthesise, place, route, pack")
    p.add_argument("--sim-verilog", metavar="FILE",
                   help="write the simulation's module nic_sim to FILE instead of a board build")
    a = p.parse_args()
    if a.sim_verilog:
        from litex.gen.fhdl.verilog import convert
        sim = NICSim(a.sys_clk_freq)
        convert(sim, ios=sim.ios, name="nic_sim").write(a.sim_verilog)
        return
    if not a.verilog or not a.output_dir:
        p.error("a board build needs --verilog and --output-dir")
    soc = NIC(a.verilog, a.sys_clk_freq)
    builder = Builder(soc, output_dir=a.output_dir, compile_software=False)
    builder.build(build_name="specmirror_versa", run=a.build)  # nextpnr seed 1, LiteX's default


if __name__ == "__main__":
    main()
