//! The verilated source device (`hdl::MirrorDevice`): the model, and the same model as a
//! [`DeviceIo`] for `hdl::mirror_device::host`.

use std::ffi::c_void;

use specmirror_hdl::mirror_device::host::{DevIn, DevOut, DeviceIo};

pub use crate::DevicePort;

verilated_model!(
    /// The verilated source device (`hdl::MirrorDevice`).
    VerilatedDevice,
    DevicePort,
    vdevice_new,
    vdevice_free,
    vdevice_eval,
    vdevice_set,
    vdevice_get
);

/// The verilated device as a [`DeviceIo`] model.
pub struct VerDevice(pub VerilatedDevice);

impl DeviceIo for VerDevice {
    fn set(&mut self, i: &DevIn) {
        use DevicePort as P;
        let m = &mut self.0;
        m.set(P::MmioAddr, i.mmio_addr);
        m.set(P::MmioWdata, i.mmio_wdata);
        m.set(P::MmioWrite, i.mmio_write as u64);
        m.set(P::RdReqReady, i.rd_req_ready as u64);
        m.set(P::RdValid, i.rd_valid as u64);
        m.set(P::RdData, i.rd_data);
        m.set(P::WrReady, i.wr_ready as u64);
        m.set(P::RxWrReady, i.rx_wr_ready as u64);
        m.set(P::TxReady, i.tx_ready as u64);
        m.set(P::RxData, i.rx_data);
        m.set(P::RxValid, i.rx_valid as u64);
        m.set(P::RxLast, i.rx_last as u64);
    }

    fn get(&mut self) -> DevOut {
        use DevicePort as P;
        let m = &mut self.0;
        m.eval();
        DevOut {
            mmio_rdata: m.get(P::MmioRdata),
            rd_req_valid: m.get(P::RdReqValid) != 0,
            rd_req_addr: m.get(P::RdReqAddr),
            rd_req_words: m.get(P::RdReqWords),
            rd_ready: m.get(P::RdReady) != 0,
            wr_valid: m.get(P::WrValid) != 0,
            wr_addr: m.get(P::WrAddr),
            wr_data: [
                m.get(P::WrData0),
                m.get(P::WrData1),
                m.get(P::WrData2),
                m.get(P::WrData3),
            ],
            rx_wr_valid: m.get(P::RxWrValid) != 0,
            rx_wr_addr: m.get(P::RxWrAddr),
            rx_wr_data: m.get(P::RxWrData),
            irq: m.get(P::Irq) != 0,
            rx_irq: m.get(P::RxIrq) != 0,
            tx_data: m.get(P::TxData),
            tx_valid: m.get(P::TxValid) != 0,
            tx_last: m.get(P::TxLast) != 0,
            stale: m.get(P::Stale),
            unmatched: m.get(P::Unmatched),
            cpl_drops: m.get(P::CplDrops),
            inflight: m.get(P::Inflight),
            rx_drops: m.get(P::RxDrops),
        }
    }

    fn tick(&mut self) {
        self.0.eval();
        self.0.tick();
    }
}
