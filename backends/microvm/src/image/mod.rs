//! Guest kernel provisioning and initramfs building.
//!
//! - [`resolve_kernel`] finds a guest kernel (`--kernel`, `$ISOBOX_KERNEL`, the cache, a
//!   Debian cloud kernel provisioned on demand, the host's /boot) and describes it.
//! - [`build_initramfs`] packs a bundle's rootfs and the agent (as /init) into a cpio archive.

pub mod ar;
pub mod bzimage;
pub mod cpio;
pub mod datadir;
pub mod deb;
pub mod decompress;
pub mod initramfs;
pub mod kernel;
pub mod modules;
pub mod provision;

pub use bzimage::{extract_vmlinux, Extracted};
pub use datadir::{data_dir, kernels_dir};
pub use decompress::Compression;
pub use initramfs::{
    build_initramfs, build_initramfs_for_ram, fits_in_ram, max_initramfs_bytes, InitramfsInfo,
    GUEST_KERNEL_RESERVE_MIB,
};
pub use kernel::{
    cached_bzimage, cached_kernel, inspect_kernel, resolve_kernel, KernelFormat, KernelInfo,
    KernelSource, ResolveOptions,
};
pub use provision::{provision_kernel, ProvisionReport, KERNEL_PACKAGE};
