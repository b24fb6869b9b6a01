//! The container's device cgroup rules, and its /dev's nodes and links (made by
//! [`devnodes`], which the microVM's guest shares).

use std::borrow::Cow;
use std::path::Path;

use oci_spec::runtime::{
    Linux, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources,
};

use crate::cgroups;
use crate::error::{ContainerError, Result};
use crate::paths;
use isobox_common::devnodes;

/// The rules of the container's device cgroup, in the order runc builds them: the bundle's
/// linux.resources.devices, then runc's default allowlist (which the bundle cannot deny),
/// then an allow rule for each linux.devices entry, so a device the bundle asks for is
/// usable (runc leaves that to the caller's own rules). Applied to a cgroup that denies
/// every device. Returns the rules and how many came from each of the first two sources.
fn cgroup_rules(linux: Option<&Linux>) -> (Vec<LinuxDeviceCgroup>, usize, usize) {
    let mut rules: Vec<LinuxDeviceCgroup> = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let own = rules.len();
    let defaults = cgroups::default_device_rules();
    let n_defaults = defaults.len();
    rules.extend(defaults);
    let listed = linux
        .and_then(|l| l.devices().as_deref())
        .unwrap_or_default();
    rules.extend(listed.iter().filter_map(|d| {
        let typ = match d.typ() {
            LinuxDeviceType::B => LinuxDeviceType::B,
            LinuxDeviceType::C | LinuxDeviceType::U => LinuxDeviceType::C,
            // A FIFO is no device to the cgroup; `a` is refused by from_spec.
            LinuxDeviceType::P | LinuxDeviceType::A => return None,
        };
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(typ)
            .major(d.major())
            .minor(d.minor())
            .access("rwm")
            .build()
            .ok()
    }));
    (rules, own, n_defaults)
}

/// The bundle's cgroup resources with the complete device rule list of [`cgroup_rules`]:
/// always set, so the default deny holds even when config.json has no linux.resources.
pub fn cgroup_resources_of(linux: Option<&Linux>) -> LinuxResources {
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    res.set_devices(Some(cgroup_rules(linux).0));
    res
}

/// [`cgroup_resources_of`] for a bundle with a linux section.
pub fn cgroup_resources(linux: &Linux) -> Option<Cow<'_, LinuxResources>> {
    Some(Cow::Owned(cgroup_resources_of(Some(linux))))
}

/// Check the device rules before anything is made, naming the field of the rule at fault.
pub fn check_cgroup_rules(linux: Option<&Linux>) -> std::result::Result<(), (String, String)> {
    let (rules, own, n_defaults) = cgroup_rules(linux);
    cgroups::device_state(&rules)
        .map(|_| ())
        .map_err(|(i, why)| {
            if i < own {
                (format!("linux.resources.devices[{i}]"), why)
            } else if i < own + n_defaults {
                (
                    "linux.resources.devices".into(),
                    format!("the default device allowlist cannot follow these rules: {why}"),
                )
            } else {
                (format!("linux.devices[{}]", i - own - n_defaults), why)
            }
        })
}

/// Create `nodes` under `rootfs` (see [`devnodes::create`]).
pub fn create(rootfs: &Path, nodes: &[Node], in_user_ns: bool) -> Result<()> {
    let root = paths::open_root(rootfs)?;
    devnodes::create(&root, nodes, in_user_ns).map_err(init_err)
}

/// The standard links of the container's /dev (see [`devnodes::links`]).
pub fn links(rootfs: &Path) -> Result<()> {
    let root = paths::open_root(rootfs)?;
    devnodes::links(&root).map_err(init_err)
}

fn init_err(e: isobox_common::Error) -> ContainerError {
    match e {
        isobox_common::Error::Setup(text) => ContainerError::Init(text),
        other => other.into(),
    }
}

pub use devnodes::{defaults, from_spec, Node};

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::SFlag;
    use oci_spec::runtime::LinuxDevice;

    #[test]
    fn default_set_is_runcs() {
        let d = defaults();
        let names: Vec<_> = d.iter().map(|n| n.path.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        assert!(d
            .iter()
            .all(|n| n.mode == 0o666 && n.kind == SFlag::S_IFCHR));
        assert_eq!((d[5].major, d[5].minor), (5, 0));
    }

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    fn state(l: Option<&Linux>) -> Vec<String> {
        let res = cgroup_resources_of(l);
        cgroups::device_state(res.devices().as_deref().unwrap())
            .unwrap()
            .into_iter()
            .map(|(a, r)| format!("{} {r}", if a { "allow" } else { "deny" }))
            .collect()
    }

    #[test]
    fn without_resources_the_cgroup_denies_all_but_the_defaults() {
        for l in [None, Some(linux("{}"))] {
            let s = state(l.as_ref());
            assert_eq!(s[0], "deny a");
            assert!(s.contains(&"allow c 1:3 rwm".to_string()), "{s:?}");
            assert!(!s.iter().any(|r| r.contains("10:232")), "{s:?}");
        }
    }

    #[test]
    fn the_bundle_rules_come_first_then_defaults_then_listed_devices() {
        // allow-all first, a deny for kvm: the defaults and /dev/fuse follow and cannot
        // bring kvm back; a bundle's deny of /dev/null is overridden by the defaults (runc).
        let l = linux(
            r#"{"resources":{"devices":[{"allow":true,"access":"rwm"},
                 {"allow":false,"type":"c","major":10,"minor":232,"access":"rwm"},
                 {"allow":false,"type":"c","major":1,"minor":3,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229},
                           {"path":"/dev/fifo","type":"p","major":0,"minor":0}]}"#,
        );
        assert_eq!(state(Some(&l)), ["allow a", "deny c 10:232 rwm"]);
        let l = linux(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"}]},
                "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}"#,
        );
        let s = state(Some(&l));
        assert_eq!(s.last().unwrap(), "allow c 136:* rwm");
        assert!(s.contains(&"allow c 10:229 rwm".to_string()), "{s:?}");
    }

    #[test]
    fn bad_rules_are_named_by_field() {
        let l = linux(
            r#"{"resources":{"devices":[{"allow":false,"access":"rwm"},
                 {"allow":true,"type":"c","access":"m"},
                 {"allow":false,"type":"c","major":10,"minor":232,"access":"m"}]}}"#,
        );
        let (field, reason) = check_cgroup_rules(Some(&l)).unwrap_err();
        assert_eq!(field, "linux.resources.devices[2]");
        assert!(reason.contains("c *:* m"), "{reason}");
        let l = linux(r#"{"resources":{"devices":[{"allow":true,"type":"p","access":"rwm"}]}}"#);
        assert_eq!(
            check_cgroup_rules(Some(&l)).unwrap_err().0,
            "linux.resources.devices[0]"
        );
        // A partial deny of the default wildcard makes the defaults themselves fail.
        let l = linux(
            r#"{"resources":{"devices":[{"allow":true,"access":"rwm"},
                 {"allow":false,"type":"c","major":1,"access":"rwm"}]}}"#,
        );
        assert_eq!(
            check_cgroup_rules(Some(&l)).unwrap_err().0,
            "linux.resources.devices"
        );
        assert!(check_cgroup_rules(None).is_ok());
    }

    #[test]
    fn spec_devices_convert_and_validate() {
        let devs: Vec<LinuxDevice> = serde_json::from_str(
            r#"[{"path":"/dev/fuse","type":"c","major":10,"minor":229,"fileMode":438,"uid":0,"gid":0},
                {"path":"/dev/loop0","type":"b","major":7,"minor":0}]"#,
        )
        .unwrap();
        let n = from_spec(&devs).unwrap();
        assert_eq!(n[0].kind, SFlag::S_IFCHR);
        assert_eq!((n[0].major, n[0].minor, n[0].mode), (10, 229, 0o666));
        assert_eq!(n[1].kind, SFlag::S_IFBLK);
        let bad: Vec<LinuxDevice> =
            serde_json::from_str(r#"[{"path":"/etc/x","type":"c","major":1,"minor":3}]"#).unwrap();
        assert_eq!(from_spec(&bad).unwrap_err().0, "linux.devices[0].path");
        let up: Vec<LinuxDevice> = serde_json::from_str(
            r#"[{"path":"/dev/../etc/shadow","type":"c","major":1,"minor":1}]"#,
        )
        .unwrap();
        let (field, reason) = from_spec(&up).unwrap_err();
        assert_eq!(field, "linux.devices[0].path");
        assert!(reason.contains("must not contain \"..\""), "{reason}");
    }
}
