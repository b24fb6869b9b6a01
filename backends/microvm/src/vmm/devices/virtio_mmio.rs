//! The virtio-mmio transport (version 2, "modern": what libvhost-user serves), the registers
//! a guest driver uses to find a device, negotiate features and place its queues. The device
//! behind it does the rest once the driver says DRIVER_OK ([`VirtioDevice::activate`]).
//!
//! Notifications bypass this code: each queue's QueueNotify write is an ioeventfd, and the
//! device's interrupt an irqfd, both registered with KVM. The interrupt status therefore
//! always reads "used buffer" once the device runs, since the backend raises the line without
//! telling the transport; a spurious look at the rings costs the guest driver nothing.

/// What a queue's driver set up, in guest physical addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueConfig {
    pub size: u16,
    pub ready: bool,
    pub desc: u64,
    pub driver: u64,
    pub device: u64,
}

/// A device behind the transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (26 for a file system).
    fn device_type(&self) -> u32;
    /// The features offered to the driver.
    fn features(&self) -> u64;
    fn queue_max_sizes(&self) -> &[u16];
    /// The device's configuration space.
    fn config(&self) -> &[u8];
    /// The driver is done (DRIVER_OK): start serving `queues` with the `features` it took.
    fn activate(&mut self, features: u64, queues: &[QueueConfig]) -> Result<(), String>;
    /// What the device can tell of its queues, for diagnostics.
    fn queue_state(&self) -> String {
        String::new()
    }
    /// Called every [`WATCH_PERIOD`] while the device runs: notice a notification that was
    /// lost on the way and send it again.
    fn watch(&mut self) {}
}

/// How often a running device looks for lost notifications.
pub const WATCH_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4f42_5349; // "ISBO"
/// Bytes of register space each device takes.
pub const MMIO_SIZE: u64 = 0x1000;
const CONFIG_OFFSET: u64 = 0x100;
/// Offset of QueueNotify, where the ioeventfds listen.
pub const NOTIFY_OFFSET: u64 = 0x50;

const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FAILED: u32 = 0x80;
const INT_VRING: u32 = 1;

pub struct VirtioMmio {
    device: Box<dyn VirtioDevice>,
    features_sel: u32,
    driver_features: u64,
    driver_features_sel: u32,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    status: u32,
    active: bool,
    /// Why activation failed, for the VMM's diagnostics.
    pub failure: Option<String>,
}

impl VirtioMmio {
    pub fn new(device: Box<dyn VirtioDevice>) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&size| QueueConfig {
                size,
                ..Default::default()
            })
            .collect();
        VirtioMmio {
            device,
            features_sel: 0,
            driver_features: 0,
            driver_features_sel: 0,
            queue_sel: 0,
            queues,
            status: 0,
            active: false,
            failure: None,
        }
    }

    fn queue(&mut self) -> Option<&mut QueueConfig> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    /// A read of `data.len()` bytes at `offset` in the register space.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            let config = self.device.config();
            for (i, b) in data.iter_mut().enumerate() {
                let at = (offset - CONFIG_OFFSET) as usize + i;
                *b = config.get(at).copied().unwrap_or(0);
            }
            return;
        }
        let half = |v: u64, sel: u32| match sel {
            0 => v as u32,
            1 => (v >> 32) as u32,
            _ => 0,
        };
        let q = self.queues.get(self.queue_sel as usize);
        let v: u32 = match offset {
            0x00 => MAGIC,
            0x04 => VERSION,
            0x08 => self.device.device_type(),
            0x0c => VENDOR,
            0x10 => half(self.device.features(), self.features_sel),
            0x34 => q.map_or(0, |_| {
                u32::from(self.device.queue_max_sizes()[self.queue_sel as usize])
            }),
            0x44 => q.map_or(0, |q| u32::from(q.ready)),
            0x60 if self.active => INT_VRING,
            0x70 => self.status,
            // No shared memory regions: their length reads as all ones.
            0xb0 | 0xb4 => u32::MAX,
            0xfc => 0, // config generation: the config never changes
            _ => 0,
        };
        if data.len() == 4 {
            data.copy_from_slice(&v.to_le_bytes());
        } else {
            data.fill(0);
        }
    }

    /// A write at `offset`; registers are 32 bits wide, the config space is read-only.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let v = u32::from_le_bytes(bytes);
        let set_half = |dst: &mut u64, sel: u32, v: u32| match sel {
            0 => *dst = (*dst & !0xffff_ffff) | u64::from(v),
            1 => *dst = (*dst & 0xffff_ffff) | (u64::from(v) << 32),
            _ => {}
        };
        let set_addr = |dst: &mut u64, high: bool| {
            if high {
                *dst = (*dst & 0xffff_ffff) | (u64::from(v) << 32);
            } else {
                *dst = (*dst & !0xffff_ffff) | u64::from(v);
            }
        };
        // Queue and feature setup only before DRIVER_OK, as the spec asks of drivers.
        let setting_up = !self.active;
        match offset {
            0x14 => self.features_sel = v,
            0x20 if setting_up => {
                let sel = self.driver_features_sel;
                set_half(&mut self.driver_features, sel, v);
            }
            0x24 => self.driver_features_sel = v,
            0x30 => self.queue_sel = v,
            0x38 if setting_up => {
                let max = self
                    .device
                    .queue_max_sizes()
                    .get(self.queue_sel as usize)
                    .copied();
                if let (Some(q), Some(max)) = (self.queue(), max) {
                    q.size = (v as u16).min(max);
                }
            }
            0x44 if setting_up => {
                if let Some(q) = self.queue() {
                    q.ready = v == 1;
                }
            }
            0x64 => {} // interrupt ack: the status is not tracked (see the module's doc)
            0x70 => self.set_status(v),
            0x80 | 0x84 if setting_up => {
                if let Some(q) = self.queue() {
                    set_addr(&mut q.desc, offset == 0x84);
                }
            }
            0x90 | 0x94 if setting_up => {
                if let Some(q) = self.queue() {
                    set_addr(&mut q.driver, offset == 0x94);
                }
            }
            0xa0 | 0xa4 if setting_up => {
                if let Some(q) = self.queue() {
                    set_addr(&mut q.device, offset == 0xa4);
                }
            }
            _ => {}
        }
    }

    fn set_status(&mut self, v: u32) {
        if v == 0 {
            // A reset. The backend cannot be taken back: a running device stays as it is
            // (the guest resets devices only at probe, before they run, and at power-off).
            if !self.active {
                self.status = 0;
                self.driver_features = 0;
                for (q, &max) in self.queues.iter_mut().zip(self.device.queue_max_sizes()) {
                    *q = QueueConfig {
                        size: max,
                        ..Default::default()
                    };
                }
            }
            return;
        }
        self.status = v;
        if v & STATUS_DRIVER_OK != 0 && !self.active {
            let features = self.driver_features & self.device.features();
            match self.device.activate(features, &self.queues) {
                Ok(()) => self.active = true,
                Err(e) => {
                    self.status |= STATUS_FAILED;
                    self.failure = Some(e);
                }
            }
        }
    }

    /// See [`VirtioDevice::watch`].
    pub fn watch(&mut self) {
        if self.active {
            self.device.watch();
        }
    }

    /// A line for diagnostics: status, whether it runs, and why not.
    pub fn describe(&self) -> String {
        format!(
            "virtio device {} status {:#x} {} {}{}",
            self.device.device_type(),
            self.status,
            if self.active { "active" } else { "inactive" },
            self.device.queue_state(),
            self.failure
                .as_deref()
                .map(|f| format!(" (activation failed: {f})"))
                .unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The features and queues an activation got.
    type Activation = Option<(u64, Vec<QueueConfig>)>;

    struct Fake {
        seen: Arc<Mutex<Activation>>,
    }

    impl VirtioDevice for Fake {
        fn device_type(&self) -> u32 {
            26
        }
        fn features(&self) -> u64 {
            (1 << 32) | (1 << 28)
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[1024, 256]
        }
        fn config(&self) -> &[u8] {
            b"tag\0"
        }
        fn activate(&mut self, features: u64, queues: &[QueueConfig]) -> Result<(), String> {
            *self.seen.lock().unwrap() = Some((features, queues.to_vec()));
            Ok(())
        }
    }

    fn r32(d: &VirtioMmio, off: u64) -> u32 {
        let mut b = [0u8; 4];
        d.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w32(d: &mut VirtioMmio, off: u64, v: u32) {
        d.write(off, &v.to_le_bytes());
    }

    #[test]
    fn a_driver_negotiates_places_its_queues_and_activates_the_device() {
        let seen = Arc::new(Mutex::new(None));
        let mut d = VirtioMmio::new(Box::new(Fake { seen: seen.clone() }));
        assert_eq!(r32(&d, 0x00), MAGIC);
        assert_eq!(r32(&d, 0x04), 2);
        assert_eq!(r32(&d, 0x08), 26);
        w32(&mut d, 0x14, 1);
        assert_eq!(r32(&d, 0x10), 1); // VERSION_1, high half
        w32(&mut d, 0x14, 0);
        assert_eq!(r32(&d, 0x10), 1 << 28);
        // The driver takes VERSION_1 and a feature the device does not offer.
        w32(&mut d, 0x24, 1);
        w32(&mut d, 0x20, 1 | 2);
        w32(&mut d, 0x24, 0);
        w32(&mut d, 0x20, 0);
        w32(&mut d, 0x30, 1);
        assert_eq!(r32(&d, 0x34), 256);
        w32(&mut d, 0x38, 4096); // more than the maximum: clamped
        w32(&mut d, 0x80, 0x1000);
        w32(&mut d, 0x84, 0x1);
        w32(&mut d, 0x90, 0x2000);
        w32(&mut d, 0xa0, 0x3000);
        w32(&mut d, 0x44, 1);
        assert_eq!(r32(&d, 0x44), 1);
        assert_eq!(r32(&d, 0x60), 0);
        assert_eq!(r32(&d, 0xb0), u32::MAX);
        let mut cfg = [0u8; 4];
        d.read(0x100, &mut cfg);
        assert_eq!(&cfg, b"tag\0");
        w32(&mut d, 0x70, 1 | 2 | 8);
        assert!(seen.lock().unwrap().is_none());
        w32(&mut d, 0x70, 1 | 2 | 8 | 4);
        let (features, queues) = seen.lock().unwrap().clone().unwrap();
        assert_eq!(features, 1 << 32);
        assert_eq!(
            queues[1],
            QueueConfig {
                size: 256,
                ready: true,
                desc: 0x1_0000_1000,
                driver: 0x2000,
                device: 0x3000
            }
        );
        assert!(!queues[0].ready);
        assert_eq!(r32(&d, 0x60), INT_VRING);
        // Once running, the queues no longer move.
        w32(&mut d, 0x80, 0x9000);
        w32(&mut d, 0x70, 0);
        assert_eq!(r32(&d, 0x70), 15);
    }

    #[test]
    fn a_failed_activation_says_why_and_marks_the_device_failed() {
        struct Broken;
        impl VirtioDevice for Broken {
            fn device_type(&self) -> u32 {
                26
            }
            fn features(&self) -> u64 {
                1 << 32
            }
            fn queue_max_sizes(&self) -> &[u16] {
                &[8]
            }
            fn config(&self) -> &[u8] {
                &[]
            }
            fn activate(&mut self, _: u64, _: &[QueueConfig]) -> Result<(), String> {
                Err("the backend hung up".into())
            }
        }
        let mut d = VirtioMmio::new(Box::new(Broken));
        w32(&mut d, 0x70, 15);
        assert_eq!(r32(&d, 0x70) & STATUS_FAILED, STATUS_FAILED);
        assert!(
            d.describe().contains("the backend hung up"),
            "{}",
            d.describe()
        );
    }
}
