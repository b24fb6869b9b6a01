//! `isobox features`: the OCI runtime features document of one backend (the flag's, else
//! the default `create` would use without an annotation), listing what that backend
//! applies, not what the schema allows ([`isobox_common::features`]).

use anyhow::Result;
use isobox_common::{features, BackendKind};

pub fn print(flag: Option<BackendKind>) -> Result<()> {
    let kind = match flag {
        Some(kind) => kind,
        None => {
            let env = std::env::var(isobox_common::backend::BACKEND_ENV).ok();
            BackendKind::host_default(crate::program_name().as_deref(), env.as_deref())?
        }
    };
    let doc = features::document(&crate::backends::for_kind(kind)?.support());
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn document(kind: BackendKind) -> Value {
        features::document(&crate::backends::for_kind(kind).unwrap().support())
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect()
    }

    #[test]
    fn the_container_lists_what_it_applies() {
        let doc = document(BackendKind::Container);
        assert_eq!(doc["annotations"]["io.isobox.backend"], "container");
        let opts = strings(&doc["mountOptions"]);
        for opt in &opts {
            isobox_common::mount_opts::parse(&[opt]).unwrap();
        }
        assert!(
            opts.contains(&"rbind") && !opts.contains(&"idmap"),
            "{opts:?}"
        );
        assert_eq!(doc["hooks"].as_array().unwrap().len(), 6);
        assert_eq!(doc["linux"]["cgroup"]["v1"], true);
        assert_eq!(doc["linux"]["capabilities"].as_array().unwrap().len(), 41);
        let ns = strings(&doc["linux"]["namespaces"]);
        assert!(ns.contains(&"network") && !ns.contains(&"time"), "{ns:?}");
    }

    #[test]
    fn the_microvm_lists_what_its_guest_applies_and_only_the_network_namespace() {
        let doc = document(BackendKind::Microvm);
        assert_eq!(doc["annotations"]["io.isobox.backend"], "microvm");
        assert_eq!(doc["annotations"]["io.isobox.hypervisors"], "builtin,qemu");
        assert_eq!(doc["hooks"].as_array().unwrap().len(), 6);
        // The VM lives in the bundle's network namespace; the guest is every other boundary.
        assert_eq!(doc["linux"]["namespaces"], json!(["network"]));
        assert_eq!(doc["linux"]["capabilities"].as_array().unwrap().len(), 41);
        assert!(strings(&doc["mountOptions"]).contains(&"ro"));
        assert_eq!(doc["linux"]["cgroup"]["v1"], false);
        assert_eq!(doc["linux"]["cgroup"]["v2"], true);
    }

    #[test]
    fn seccomp_lists_what_the_compiler_takes() {
        let sec = &document(BackendKind::Container)["linux"]["seccomp"];
        assert_eq!(sec["enabled"], true);
        let actions = strings(&sec["actions"]);
        assert_eq!(actions.len(), 8, "{actions:?}");
        assert!(!actions.contains(&"SCMP_ACT_NOTIFY"), "{actions:?}");
        assert_eq!(strings(&sec["operators"]).len(), 7);
        assert_eq!(
            strings(&sec["archs"]),
            ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        );
        assert_eq!(sec["knownFlags"].as_array().unwrap().len(), 4);
        assert_eq!(
            strings(&sec["supportedFlags"]),
            [
                "SECCOMP_FILTER_FLAG_LOG",
                "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                "SECCOMP_FILTER_FLAG_TSYNC"
            ]
        );
    }
}
