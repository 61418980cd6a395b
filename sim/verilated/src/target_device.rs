//! The verilated target device (`hdl::TargetDevice`): the model, and the same model as a
//! [`TdIo`] for `hdl::target_device::host`.

use std::ffi::c_void;

use specmirror_hdl::target_device::host::{TdIn, TdIo, TdOut};

pub use crate::TargetDevicePort;

verilated_model!(
    /// The verilated target device (`hdl::TargetDevice`).
    VerilatedTargetDevice,
    TargetDevicePort,
    vtdevice_new,
    vtdevice_free,
    vtdevice_eval,
    vtdevice_set,
    vtdevice_get
);

/// The verilated target device as a [`TdIo`] model.
pub struct VerTargetDevice(pub VerilatedTargetDevice);

impl VerTargetDevice {
    pub fn new() -> VerTargetDevice {
        VerTargetDevice(VerilatedTargetDevice::new())
    }
}

impl Default for VerTargetDevice {
    fn default() -> Self {
        VerTargetDevice::new()
    }
}

impl TdIo for VerTargetDevice {
    fn set(&mut self, i: &TdIn) {
        use TargetDevicePort as P;
        let m = &mut self.0;
        m.set(P::MmioAddr, i.mmio_addr);
        m.set(P::MmioWdata, i.mmio_wdata);
        m.set(P::MmioWrite, i.mmio_write as u64);
        m.set(P::RdReqReady, i.rd_req_ready as u64);
        m.set(P::RdValid, i.rd_valid as u64);
        m.set(P::RdData, i.rd_data);
        m.set(P::WrReady, i.wr_ready as u64);
        m.set(P::TxReady, i.tx_ready as u64);
        m.set(P::RxData, i.rx_data);
        m.set(P::RxValid, i.rx_valid as u64);
        m.set(P::RxLast, i.rx_last as u64);
        m.eval();
    }

    fn get(&mut self) -> TdOut {
        use TargetDevicePort as P;
        let m = &self.0;
        TdOut {
            mmio_rdata: m.get(P::MmioRdata),
            rd_req_valid: m.get(P::RdReqValid) != 0,
            rd_req_addr: m.get(P::RdReqAddr),
            rd_req_words: m.get(P::RdReqWords),
            rd_ready: m.get(P::RdReady) != 0,
            wr_valid: m.get(P::WrValid) != 0,
            wr_addr: m.get(P::WrAddr),
            wr_data: m.get(P::WrData),
            irq: m.get(P::Irq) != 0,
            tx_data: m.get(P::TxData),
            tx_valid: m.get(P::TxValid) != 0,
            tx_last: m.get(P::TxLast) != 0,
            rx_drops: m.get(P::RxDrops),
        }
    }

    fn tick(&mut self) {
        self.0.tick();
    }
}
