//! Guest kernel provisioning and initramfs building.
