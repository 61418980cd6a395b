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

    python nic.py --verilog DIR/target_path.v --output-dir OUT [--sys-clk-freq 75e6] [--build]
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
from liteeth.core import LiteEthUDPIPCore

UDP_PORT = 7800
FRAME_BYTES = 72  # a control frame: 64-byte header and the 8-byte CRC trailer
VOLUME_BYTES = 64 * 1024
REGION_SHIFT = 12
EINVAL = 22


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
        self.ethcore = LiteEthUDPIPCore(
            self.ethphy,
            mac_address=0x10E2D5000050,
            ip_address="192.168.1.50",
            clk_freq=sys_clk_freq,
            dw=64,
            with_sys_datapath=True,
        )
        port = self.ethcore.udp.crossbar.get_port(UDP_PORT, dw=64)
        rx, tx = port.source, port.sink

        # Receive: every word straight into the lock path, never stalled. LiteEth's user port
        # does not drive `first`, so the start of each datagram is tracked here; the sender's
        # address is latched there, and answers go back to the last sender.
        in_frame = Signal()
        peer_ip = Signal(32)
        peer_port = Signal(16)
        self.comb += rx.ready.eq(1)
        self.sync += If(rx.valid, in_frame.eq(~rx.last))
        self.sync += If(rx.valid & ~in_frame, peer_ip.eq(rx.ip_address), peer_port.eq(rx.src_port))

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
        self.comb += answers.source.connect(tx)

        held = Signal(16)
        frames_bad = Signal(32)

        # The volume: block RAM written a word per clock, bytes enabled for a short last word.
        # One write completes before the next is taken.
        wr_valid, wr_ready, wr_last, wr_fua = Signal(), Signal(), Signal(), Signal()
        wr_data, wr_offset, wr_len, wr_slot = Signal(64), Signal(64), Signal(32), Signal(4)
        done_valid, done_ready, done_slot, done_error = Signal(), Signal(), Signal(4), Signal(32)
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
            aligned.eq(wr_offset[0:3] == 0),
            wr_ready.eq(~done_valid),
            vport.adr.eq(wr_offset[3:16] + index),
            vport.dat_w.eq(wr_data),
            If(wr_valid & wr_ready & aligned,
                vport.we.eq(Mux(wr_last, last_mask[wr_len[0:3]], 0xFF))),
        ]
        self.sync += [
            If(wr_valid & wr_ready,
                index.eq(index + 1),
                If(wr_last,
                    index.eq(0),
                    done_valid.eq(1),
                    done_slot.eq(wr_slot),
                    done_error.eq(Mux(aligned, 0, EINVAL)))),
            If(done_valid & done_ready, done_valid.eq(0)),
        ]
        platform.add_source(os.path.abspath(verilog))
        self.specials += Instance(
            "target_path",
            i_clock=ClockSignal("sys"),
            i_rx_data=rx.data,
            i_rx_valid=rx.valid,
            i_rx_last=rx.last,
            o_tx_data=a.data,
            o_tx_valid=a.valid,
            o_tx_last=a.last,
            i_tx_ready=a.ready,
            i_generation=1,
            i_region_count=VOLUME_BYTES >> REGION_SHIFT,
            i_retry_backoff=64,
            i_retry_limit=16,
            i_local_hold=0,
            i_local_first=0,
            i_local_end=0,
            i_clear_barriers=0,
            i_region_shift=REGION_SHIFT,
            i_volume_bytes=VOLUME_BYTES,
            i_data_timeout=int(sys_clk_freq // 1000),
            i_grant_timeout=int(sys_clk_freq),
            o_wr_valid=wr_valid,
            i_wr_ready=wr_ready,
            o_wr_data=wr_data,
            o_wr_last=wr_last,
            o_wr_offset=wr_offset,
            o_wr_len=wr_len,
            o_wr_fua=wr_fua,
            o_wr_slot=wr_slot,
            i_done_valid=done_valid,
            o_done_ready=done_ready,
            i_done_slot=done_slot,
            i_done_error=done_error,
            o_held=held,
            o_frames_bad=frames_bad,
        )
        # Something to look at on the board: locks held, a bad frame seen, the volume's fold.
        leds = platform.request_all("user_led")
        self.comb += leds.eq(~Cat(held[:6], scan_fold, frames_bad != 0))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verilog", required=True, help="target_path.v generated from hdl/")
    p.add_argument("--output-dir", required=True)
    p.add_argument("--sys-clk-freq", type=float, default=75e6)
    p.add_argument("--build", action="store_true", help="synthesise, place, route, pack")
    a = p.parse_args()
    soc = NIC(a.verilog, a.sys_clk_freq)
    builder = Builder(soc, output_dir=a.output_dir, compile_software=False)
    builder.build(build_name="specmirror_versa", run=a.build)  # nextpnr seed 1, LiteX's default


if __name__ == "__main__":
    main()
