//! A virtio-fs device whose queues a vhost-user backend (virtiofsd) serves: this side only
//! offers the backend's features, holds the config space (the tag), and at activation hands
//! the backend the guest memory (memfd regions), the rings' addresses, a kick eventfd per
//! queue (an ioeventfd on QueueNotify) and the interrupt eventfd (an irqfd).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;

use vhost::vhost_user::{Frontend, VhostUserFrontend, VhostUserProtocolFeatures};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::virtio_mmio::{QueueConfig, VirtioDevice};

/// virtio device id of a file system.
pub const VIRTIO_ID_FS: u32 = 26;
/// The high-priority queue and one request queue.
pub const NUM_QUEUES: usize = 2;
/// Each queue's largest size (qemu's vhost-user-fs-device takes the same).
pub const QUEUE_SIZE: u16 = 1024;
/// Bytes of the tag in the config space.
const TAG_LEN: usize = 36;

const VIRTIO_F_VERSION_1: u64 = 1 << 32;
const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << 28;
const VIRTIO_RING_F_EVENT_IDX: u64 = 1 << 29;
/// Not a device feature: the vhost-user protocol's own.
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;
/// What this transport can give a driver of the backend's features (split rings, no IOMMU).
const SUPPORTED: u64 = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX;

pub struct VhostUserFs {
    frontend: Frontend,
    backend_features: u64,
    config: Vec<u8>,
    memory: GuestMemoryMmap,
    kicks: Vec<EventFd>,
    call: EventFd,
    /// The queues as activated.
    queues: Vec<QueueConfig>,
    /// The driver took VIRTIO_RING_F_EVENT_IDX: its rings say what it has consumed.
    event_idx: bool,
    /// Each queue's (available, used) indexes at the last watch.
    seen: Vec<(u16, u16)>,
}

fn err(what: &str) -> impl FnOnce(vhost::Error) -> String + '_ {
    move |e| format!("vhost-user {what}: {e}")
}

impl VhostUserFs {
    /// Take the backend on `socket` for the share `tag`; `kicks` (one per queue) and `call`
    /// are the eventfds KVM signals and listens on.
    pub fn new(
        socket: OwnedFd,
        tag: &str,
        memory: GuestMemoryMmap,
        kicks: Vec<EventFd>,
        call: EventFd,
    ) -> Result<Self, String> {
        if tag.len() > TAG_LEN {
            return Err(format!("the tag {tag:?} is longer than {TAG_LEN} bytes"));
        }
        let frontend = Frontend::from_stream(UnixStream::from(socket), NUM_QUEUES as u64);
        frontend.set_owner().map_err(err("SET_OWNER"))?;
        let backend_features = frontend.get_features().map_err(err("GET_FEATURES"))?;
        if backend_features & VIRTIO_F_VERSION_1 == 0 {
            return Err("the backend does not offer VIRTIO_F_VERSION_1".into());
        }
        let mut config = vec![0u8; TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[TAG_LEN..].copy_from_slice(&1u32.to_le_bytes()); // num_request_queues
        Ok(VhostUserFs {
            frontend,
            backend_features,
            config,
            memory,
            kicks,
            call,
            queues: Vec::new(),
            event_idx: false,
            seen: Vec::new(),
        })
    }

    fn host_address(&self, gpa: u64, what: &str) -> Result<u64, String> {
        self.memory
            .get_host_address(GuestAddress(gpa))
            .map(|p| p as u64)
            .map_err(|e| format!("the {what} at {gpa:#x} is not in guest memory: {e}"))
    }
}

impl VirtioDevice for VhostUserFs {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_FS
    }

    fn features(&self) -> u64 {
        self.backend_features & SUPPORTED
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    /// Each ready queue's available and used indexes, as the guest's rings hold them: a used
    /// index ahead of what the guest took means an interrupt it did not get.
    fn queue_state(&self) -> String {
        let idx = |gpa: u64| {
            self.memory
                .read_obj::<u16>(GuestAddress(gpa + 2))
                .map_or_else(|e| format!("? ({e})"), |v| v.to_string())
        };
        self.queues
            .iter()
            .enumerate()
            .filter(|(_, q)| q.ready)
            .map(|(i, q)| format!("q{i} avail={} used={}", idx(q.driver), idx(q.device)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A queue whose used index stays ahead of what the driver asked to be told about
    /// (`used_event`, with EVENT_IDX) lost its interrupt: it is raised again. One whose
    /// available index stays ahead of the used one may have lost its kick: the backend is
    /// kicked again. Both are harmless when nothing was lost (the guest's driver and the
    /// backend look at the rings and find nothing new), and both wait a whole period first.
    fn watch(&mut self) {
        let read = |gpa: u64| self.memory.read_obj::<u16>(GuestAddress(gpa)).ok();
        for (i, q) in self.queues.iter().enumerate() {
            if !q.ready {
                continue;
            }
            let (Some(avail), Some(used)) = (read(q.driver + 2), read(q.device + 2)) else {
                continue;
            };
            let before = self.seen.get(i).copied();
            if before == Some((avail, used)) {
                // avail ring: flags, idx, ring[size], used_event.
                let used_event = read(q.driver + 4 + 2 * u64::from(q.size));
                if self.event_idx && used_event.is_some_and(|e| e != used) {
                    let _ = self.call.write(1);
                }
                if avail != used {
                    let _ = self.kicks[i].write(1);
                }
            }
            if let Some(s) = self.seen.get_mut(i) {
                *s = (avail, used);
            }
        }
    }

    fn activate(&mut self, features: u64, queues: &[QueueConfig]) -> Result<(), String> {
        self.queues = queues.to_vec();
        self.event_idx = features & VIRTIO_RING_F_EVENT_IDX != 0;
        self.seen = vec![(0, 0); queues.len()];
        let protocol = self.backend_features & VHOST_USER_F_PROTOCOL_FEATURES != 0;
        if protocol {
            let offered = self
                .frontend
                .get_protocol_features()
                .map_err(err("GET_PROTOCOL_FEATURES"))?;
            self.frontend
                .set_protocol_features(offered & VhostUserProtocolFeatures::MQ)
                .map_err(err("SET_PROTOCOL_FEATURES"))?;
        }
        let acked = features | (self.backend_features & VHOST_USER_F_PROTOCOL_FEATURES);
        self.frontend
            .set_features(acked)
            .map_err(err("SET_FEATURES"))?;
        let regions = self
            .memory
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<Result<Vec<_>, _>>()
            .map_err(err("memory regions (guest memory must be a memfd)"))?;
        self.frontend
            .set_mem_table(&regions)
            .map_err(err("SET_MEM_TABLE"))?;
        for (i, q) in queues.iter().enumerate() {
            if !q.ready {
                continue;
            }
            self.frontend
                .set_vring_num(i, q.size)
                .map_err(err("SET_VRING_NUM"))?;
            let addrs = VringConfigData {
                queue_max_size: QUEUE_SIZE,
                queue_size: q.size,
                flags: 0,
                desc_table_addr: self.host_address(q.desc, "descriptor table")?,
                used_ring_addr: self.host_address(q.device, "used ring")?,
                avail_ring_addr: self.host_address(q.driver, "available ring")?,
                log_addr: None,
            };
            self.frontend
                .set_vring_addr(i, &addrs)
                .map_err(err("SET_VRING_ADDR"))?;
            self.frontend
                .set_vring_base(i, 0)
                .map_err(err("SET_VRING_BASE"))?;
            self.frontend
                .set_vring_call(i, &self.call)
                .map_err(err("SET_VRING_CALL"))?;
            self.frontend
                .set_vring_kick(i, &self.kicks[i])
                .map_err(err("SET_VRING_KICK"))?;
            if protocol {
                self.frontend
                    .set_vring_enable(i, true)
                    .map_err(err("SET_VRING_ENABLE"))?;
            }
        }
        Ok(())
    }
}
